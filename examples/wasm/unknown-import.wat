;; Imports a function that is neither WASI preview 1 nor IronClaw.
(module
  (import "env" "launch_missiles" (func $m))
  (memory (export "memory") 1)
  (func (export "_start") (call $m)))
