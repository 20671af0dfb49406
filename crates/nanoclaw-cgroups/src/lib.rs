//! NanoClaw cgroup management: cgroup v2 first, v1 where the host has only that.
