use clap::Parser;

fn main() {
    let cli = gpu_ae::cli::Cli::parse();
    if let Err(e) = gpu_ae::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
