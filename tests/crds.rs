//! `crds/` holds exactly what `multiregion crd` prints.

#[test]
fn committed_crds_are_up_to_date() {
    let generated = multiregion::api::crds_yaml().expect("CRDs render");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/multiregion.yaml");
    let committed = std::fs::read_to_string(&path).expect("crds/multiregion.yaml exists");
    assert!(
        committed == generated,
        "crds/ is stale: run `cargo run -- crd > crds/multiregion.yaml` and commit it"
    );
}

#[test]
fn the_crds_name_their_printer_columns_and_short_name() {
    let yaml = multiregion::api::crds_yaml().unwrap();
    for column in [
        "Strategy", "Active", "Weights", "Healthy", "Ready", "Version",
    ] {
        assert!(yaml.contains(&format!("name: {column}")), "column {column}");
    }
    assert!(yaml.contains("- mra"));
    let ready_columns = yaml
        .matches(".status.conditions[?(@.type==\"Ready\")].status")
        .count();
    assert_eq!(ready_columns, 2, "a READY column on both kinds");
    assert!(yaml.contains("x-kubernetes-list-type: map"));
    assert!(
        yaml.contains("description: \"One application run in several regions"),
        "kubectl explain opens with the real description"
    );
}
