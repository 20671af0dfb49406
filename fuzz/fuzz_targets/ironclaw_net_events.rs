//! Fuzzes the enclave's socket table against arbitrary host NET events
//! (`ironclaw_abi::net_table`, the enclave side of `ironclaw serve`): whatever the host
//! sends, the table never panics, never exceeds its connection limit, never buffers more
//! than the window per connection, and module-side calls keep working.
#![no_main]

use ironclaw_abi::net_table::SocketTable;
use libfuzzer_sys::fuzz_target;

const WINDOW: u64 = 4096;
const MAX_CONNS: u64 = 8;

fuzz_target!(|data: &[u8]| {
    let mut t = SocketTable::new(2, WINDOW, MAX_CONNS, 64 * 1024);
    // The input is a sequence of exchanges separated by 0xFF 0xFF 0xFF 0xFF.
    for chunk in data.split(|b| *b == 0xFF) {
        t.apply_events(chunk, u64::from(chunk.first().copied().unwrap_or(0) & 1));
        assert!(t.connections() as u64 <= MAX_CONNS);
        for fd in 3..16u32 {
            if let Some(r) = t.readiness(fd) {
                assert!(r.nbytes <= WINDOW || t.is_listener(fd));
            }
            let _ = t.accept(fd, true);
            let mut buf = [0u8; 512];
            let _ = t.recv(fd, &mut [&mut buf[..]], fd % 2 == 0);
            let _ = t.send(fd, b"reply");
        }
        let _ = t.take_ops();
    }
});
