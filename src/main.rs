fn main() {
    std::process::exit(grelab::cli::main());
}
