//! IronClaw key broker: the Confidential Containers KBS protocol, policy, encrypted store.
