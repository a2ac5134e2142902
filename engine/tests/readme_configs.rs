//! The README's table of topic configs names every config the engine knows, with Kafka's
//! default, and says "no effect" exactly for the configs that have none here.

use strand_engine::topic_config::{Effect, TOPIC_CONFIGS};

#[test]
fn the_readme_table_lists_every_topic_config_with_its_default_and_effect() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md beside the workspace");
    for def in TOPIC_CONFIGS {
        let prefix = format!("| `{}` | ", def.key);
        let row = readme
            .lines()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("README's topic config table has no row for {}", def.key));
        let default = if def.default.is_empty() {
            "(empty)"
        } else {
            def.default
        };
        assert!(
            row.contains(&format!("| `{default}` |")),
            "README gives {} a default other than {default}: {row}",
            def.key
        );
        let no_effect = row.contains("| no effect: ");
        assert_eq!(
            no_effect,
            matches!(def.effect, Effect::NoEffect(_)),
            "README says the wrong thing about {}'s effect: {row}",
            def.key
        );
    }
}
