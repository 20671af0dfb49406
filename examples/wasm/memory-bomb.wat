;; Grows its memory by 16 pages (1 MiB) at a time until the cap stops it; if growth ever
;; fails with -1 instead, it traps, so the run never ends "successfully".
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
      (br $grow))))
