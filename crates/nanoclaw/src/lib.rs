//! NanoClaw: a daemonless OCI runtime (library; the nanoclaw binary only parses arguments).
