;; Never ends: stopped by the fuel budget or by the wall-clock timeout.
(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))
