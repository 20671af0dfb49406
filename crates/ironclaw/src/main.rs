fn main() {
    eprintln!("ironclaw: not built yet");
    std::process::exit(1);
}
