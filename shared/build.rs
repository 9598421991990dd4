// The migrations are embedded at compile time (refinery::embed_migrations!): rebuild when one
// is added or changed, or the binaries and the test template would miss it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
