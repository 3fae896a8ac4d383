//! The `drover` binary: all behaviour lives in the library's `cli` module.

// Plans of millions of steps make tens of millions of small allocations; mimalloc makes them
// several times cheaper than the system allocator (docs/benchmarks.md, planning 100,000 sites).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    drover::main()
}
