//! `inventory-api`: the inventory HTTP service (see the library's `cli` module for the flags).

fn main() -> std::process::ExitCode {
    inventory_api::cli::main_from(std::env::args_os().skip(1))
}
