//! Shared test helpers for the claw workspace (busybox rootfs, loud skips).
