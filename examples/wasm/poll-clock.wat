;; A service whose module only sleeps: one poll_oneoff on a 300 ms relative monotonic
;; clock subscription (the host waits; no spinning), then exits with the number of events
;; (1) plus 10 * the event's type (0 = clock): exit code 1.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; subscription at 0: userdata 7, tag 0 (clock), id 1 (monotonic) at 16,
    ;; timeout 300 ms at 24, precision 0, flags 0 (relative).
    (i64.store (i32.const 0) (i64.const 7))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 300000000))
    (if (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))
      (then (call $exit (i32.const 99))))
    (if (i64.ne (i64.load (i32.const 64)) (i64.const 7))
      (then (call $exit (i32.const 98))))
    (call $exit (i32.add (i32.load (i32.const 128))
                         (i32.mul (i32.load8_u (i32.const 74)) (i32.const 10))))))
