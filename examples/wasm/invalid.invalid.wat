this file is deliberately not WebAssembly: the build copies it as raw bytes to invalid.invalid.wasm
