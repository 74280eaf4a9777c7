//! How long one bcrypt hash takes at each `--bcrypt-cost`, on this machine: what a
//! UserAdd, UserChangePassword or Authenticate costs a member in CPU. Run it on the
//! board (or under qemu, `docs/security.md`):
//!
//! ```text
//! cargo run --release -p bramble-server --example bcrypt_cost [COST ...]
//! ```

use std::time::Instant;

fn main() {
    let costs: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let costs = if costs.is_empty() {
        vec![4, 8, 10, 12]
    } else {
        costs
    };
    println!("cost  ms/hash  ms/verify");
    for cost in costs {
        // Enough repetitions for a stable figure, few at high costs.
        let reps = (1u32 << 14u32.saturating_sub(cost).min(10)).max(2);
        let start = Instant::now();
        let mut hash = String::new();
        for _ in 0..reps {
            hash = match bcrypt::hash("a password of some length", cost) {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("cost {cost}: {e}");
                    return;
                }
            };
        }
        let per_hash = start.elapsed().as_secs_f64() * 1000.0 / f64::from(reps);
        let start = Instant::now();
        for _ in 0..reps {
            let _ = bcrypt::verify("a password of some length", &hash);
        }
        let per_verify = start.elapsed().as_secs_f64() * 1000.0 / f64::from(reps);
        println!("{cost:>4}  {per_hash:>7.1}  {per_verify:>9.1}");
    }
}
