fn main() {
    eprintln!("nanoclaw: not built yet");
    std::process::exit(1);
}
