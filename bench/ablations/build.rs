//! The glue's version line and build-info metric name a commit (filter/build.rs sets it for the
//! shipped filter): this build names itself instead, so that no one takes it for one.

fn main() {
    println!("cargo:rustc-env=LLM_PULSE_COMMIT=bench-ablations");
    println!("cargo:rerun-if-changed=build.rs");
}
