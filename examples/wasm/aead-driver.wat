;; Drives IronClaw's `aead_seal` / `aead_open` with raw arguments read from stdin, so a test
;; on the host can pass any pointer, length or id (crates/ironclaw/tests/aead_calls.rs).
;;
;; stdin is copied to memory at 1024. There: u32 n, then n requests of 12 little-endian u32
;; (op: 1 seal / 2 open, alg, key, key_len, nonce, nonce_len, aad, aad_len, buf, len, cap,
;; echo), then data the requests point into (absolute addresses). For each request stdout
;; gets the call's i32 result, then `echo` bytes of memory from `buf`.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "ironclaw" "aead_seal"
    (func $seal (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "ironclaw" "aead_open"
    (func $open (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  ;; Two pages, fixed: the test relies on the memory ending at 131072.
  (memory (export "memory") 2 2)

  ;; Reads stdin into 1024.. until EOF or the memory is full.
  (func $read_all
    (local $total i32)
    (loop $more
      (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $total)))
      (i32.store (i32.const 4) (i32.sub (i32.const 130048) (local.get $total)))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
        (then unreachable))
      (if (i32.load (i32.const 8))
        (then
          (local.set $total (i32.add (local.get $total) (i32.load (i32.const 8))))
          (br $more)))))

  ;; Writes ptr..ptr+len to stdout.
  (func $write (param $ptr i32) (param $len i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (i32.const 0) (local.get $ptr))
        (i32.store (i32.const 4) (local.get $len))
        (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
          (then unreachable))
        (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 8))))
        (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 8))))
        (br $more))))

  (func (export "_start")
    (local $n i32) (local $req i32) (local $r i32)
    (call $read_all)
    (local.set $n (i32.load (i32.const 1024)))
    (local.set $req (i32.const 1028))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (if (i32.eq (i32.load (local.get $req)) (i32.const 1))
          (then
            (local.set $r (call $seal
              (i32.load offset=4 (local.get $req)) (i32.load offset=8 (local.get $req))
              (i32.load offset=12 (local.get $req)) (i32.load offset=16 (local.get $req))
              (i32.load offset=20 (local.get $req)) (i32.load offset=24 (local.get $req))
              (i32.load offset=28 (local.get $req)) (i32.load offset=32 (local.get $req))
              (i32.load offset=36 (local.get $req)) (i32.load offset=40 (local.get $req)))))
          (else
            (local.set $r (call $open
              (i32.load offset=4 (local.get $req)) (i32.load offset=8 (local.get $req))
              (i32.load offset=12 (local.get $req)) (i32.load offset=16 (local.get $req))
              (i32.load offset=20 (local.get $req)) (i32.load offset=24 (local.get $req))
              (i32.load offset=28 (local.get $req)) (i32.load offset=32 (local.get $req))
              (i32.load offset=36 (local.get $req))))))
        (i32.store (i32.const 16) (local.get $r))
        (call $write (i32.const 16) (i32.const 4))
        (call $write (i32.load offset=32 (local.get $req)) (i32.load offset=44 (local.get $req)))
        (local.set $req (i32.add (local.get $req) (i32.const 48)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next))))
)
