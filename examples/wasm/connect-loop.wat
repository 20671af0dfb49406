;; A service that opens egress connections in a loop and never closes them. First it
;; asks for a destination that is not in the egress list (must be refused: -4), then
;; connects to 127.0.0.1:9 until the service's connection limit answers -3.
;; Exit code = 10 * connections opened + (-last result); 99 if the refusal was wrong.
(module
  (import "ironclaw" "connect" (func $connect (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "127.0.0.1:9")
  (data (i32.const 16) "127.0.0.1:7")
  (func (export "_start")
    (local $n i32) (local $r i32)
    (if (i32.ne (call $connect (i32.const 16) (i32.const 11)) (i32.const -4))
      (then (call $exit (i32.const 99))))
    (block $done
      (loop $again
        (local.set $r (call $connect (i32.const 0) (i32.const 11)))
        (br_if $done (i32.lt_s (local.get $r) (i32.const 0)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $again)))
    (call $exit (i32.add (i32.mul (local.get $n) (i32.const 10))
                         (i32.sub (i32.const 0) (local.get $r))))))
