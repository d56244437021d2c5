//! The local index cache is disposable: deleting it changes no result.

use crate::common::{Rng, Sandbox, snapshot_of};

#[test]
fn deleting_the_cache_changes_nothing() {
    let sb = Sandbox::new();
    let src = sb.path("data");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let mut rng = Rng(3);
    for i in 0..5u64 {
        let data: Vec<u8> = (0..200).flat_map(|p| rng.page(8192, p + i)).collect();
        std::fs::write(src.join("sub").join(format!("f{i}")), data).unwrap();
    }
    std::os::unix::fs::symlink("sub/f1", src.join("link")).unwrap();
    sb.ok(&["init"]);
    sb.backup(&["--tag", "one"], &[&src]);
    std::fs::write(src.join("sub/f9"), b"later").unwrap();
    sb.backup(&["--tag", "two"], &[&src]);

    let list_before = sb.ok(&["list", "--json"]);
    let ls_before = sb.ok(&["ls", "latest"]);
    let t1 = sb.path("r1");
    sb.ok(&["restore", "latest", "--target", t1.to_str().unwrap()]);

    std::fs::remove_dir_all(sb.cache()).unwrap();
    assert_eq!(sb.ok(&["list", "--json"]), list_before);
    assert_eq!(sb.ok(&["ls", "latest"]), ls_before);
    std::fs::remove_dir_all(sb.cache()).unwrap();
    let t2 = sb.path("r2");
    sb.ok(&["restore", "latest", "--target", t2.to_str().unwrap()]);
    assert_eq!(snapshot_of(&t1), snapshot_of(&t2));
    assert_eq!(snapshot_of(&src), snapshot_of(&t2));

    // A backup after the cache is gone still deduplicates against the repository.
    std::fs::remove_dir_all(sb.cache()).unwrap();
    let again = sb.backup(&["--force-read"], &[&src]);
    assert_eq!(again["chunks_added"], 0, "{again}");
}
