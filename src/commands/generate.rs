//! `pos-etl generate`: write a simulated dataset in the original export dialect.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use crate::cli::GenerateArgs;
use crate::progress::Progress;
use crate::simulation::{self, Catalogue, Counts, Params, STORES};

/// Writes the dataset of `args` into `args.out_dir`; returns the rows written.
pub fn run(args: &GenerateArgs) -> anyhow::Result<Counts> {
    let started = Instant::now();
    let params = Params { items: args.items, days: args.days, seed: args.seed };
    let dir = &args.out_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let catalogue = Catalogue::new(&params);
    catalogue.write_items(create(dir, "item.csv")?)?;
    simulation::write_stores(create(dir, "store.csv")?)?;
    simulation::write_change_types(create(dir, "inventory_change_type.csv")?)?;

    let progress = Progress::new(args.progress);
    let bar = progress.bytes("generate", 0);
    bar.set_style(indicatif::ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} store-days {elapsed}").expect("valid template"));
    bar.set_length(params.days * STORES.len() as u64);
    let counts = std::thread::scope(|scope| -> anyhow::Result<Counts> {
        let tasks: Vec<_> = STORES
            .iter()
            .map(|store| {
                let (catalogue, bar) = (&catalogue, bar.clone());
                scope.spawn(move || -> anyhow::Result<Counts> {
                    let snapshots = create(dir, &format!("inventory_snapshot_{}.csv", store.file_suffix))?;
                    let changes = create(dir, &format!("inventory_change_{}.csv", store.file_suffix))?;
                    Ok(simulation::simulate_store(&params, catalogue, store, snapshots, changes, || bar.inc(1))?)
                })
            })
            .collect();
        let mut total = Counts::default();
        for task in tasks {
            total += task.join().expect("a store simulation panicked")?;
        }
        Ok(total)
    })?;
    bar.finish();
    progress.println(&format!(
        "pos-etl: wrote {} snapshot rows and {} change rows ({} written twice) for {} items over {} days to {} in {:.1} s",
        counts.snapshots,
        counts.changes,
        counts.duplicates,
        params.items,
        params.days,
        dir.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(counts)
}

fn create(dir: &Path, name: &str) -> anyhow::Result<BufWriter<File>> {
    let path = dir.join(name);
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(BufWriter::with_capacity(1 << 20, file))
}
