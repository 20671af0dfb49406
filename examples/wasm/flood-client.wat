;; A service that accepts one connection (blocking) and then sends to it forever with
;; blocking sock_send: against a client that never reads, the host must buffer at most
;; the window and the module must block (no spin, no unbounded host memory).
(module
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send" (func $send (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; iovec at 0: buf = 1024, len = 60000; accepted fd at 16; sent count at 20.
  (data (i32.const 0) "\00\04\00\00\60\ea\00\00")
  (func (export "_start")
    (if (call $accept (i32.const 3) (i32.const 0) (i32.const 16))
      (then unreachable))
    (loop $flood
      (if (call $send (i32.load (i32.const 16)) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 20))
        (then return))
      (br $flood))))
