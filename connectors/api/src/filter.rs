//! [`EventFilter`]: which events a route or an endpoint wants, by event type (names or
//! globs), category, phase, and globs on the catalog, the namespace (levels joined by `.`)
//! and the table or view name. Every given criterion must match; an empty one matches
//! everything. One implementation for the router and for every connector's own filters, so
//! that a route and a filter with the same settings select the same events.

use glob::Pattern;

use crate::event::{Category, EventType, Phase};
use crate::PolarisEvent;

/// The criteria as configured (text, not yet checked).
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterSpec<'a> {
    /// Event type names or globs (`AFTER_*_TABLE`).
    pub event_types: &'a [String],
    /// Categories (`TABLE`, `VIEW`, ...).
    pub categories: &'a [String],
    /// `before` or `after`.
    pub phase: Option<&'a str>,
    /// Glob on the catalog name.
    pub catalog: Option<&'a str>,
    /// Glob on the namespace, levels joined by `.`.
    pub namespace: Option<&'a str>,
    /// Glob on the table or view name.
    pub table: Option<&'a str>,
}

/// One thing wrong with a filter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterProblem {
    /// The setting (`event_types`, `categories`, `phase`, `catalog`, `namespace`, `table`).
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

/// A compiled filter.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    event_types: Vec<Pattern>,
    categories: Vec<Category>,
    phase: Option<Phase>,
    catalog: Option<Pattern>,
    namespace: Option<Pattern>,
    table: Option<Pattern>,
}

impl EventFilter {
    /// Compiles `spec`; on failure, every problem found. An event type that is not a glob
    /// must be a known Polaris event type (a typo would silently match nothing).
    pub fn compile(spec: &FilterSpec<'_>) -> Result<EventFilter, Vec<FilterProblem>> {
        let mut problems = Vec::new();
        let mut filter = EventFilter::default();
        let glob = |field: &'static str, text: &str, problems: &mut Vec<FilterProblem>| {
            Pattern::new(text)
                .map_err(|e| {
                    problems.push(FilterProblem {
                        field,
                        problem: format!("`{text}` is not a valid glob: {e}"),
                        fix: "fix the pattern".into(),
                    })
                })
                .ok()
        };
        for text in spec.event_types {
            let is_glob = text.contains(['*', '?', '[']);
            if !is_glob && matches!(EventType::from_name(text), EventType::Unknown(_)) {
                problems.push(FilterProblem {
                    field: "event_types",
                    problem: format!("`{text}` is not a Polaris event type"),
                    fix: "use a name from `polaris-bridge event-types` or a glob such as `AFTER_*_TABLE`".into(),
                });
                continue;
            }
            filter
                .event_types
                .extend(glob("event_types", text, &mut problems));
        }
        for text in spec.categories {
            match text.parse::<Category>() {
                Ok(category) => filter.categories.push(category),
                Err(_) => problems.push(FilterProblem {
                    field: "categories",
                    problem: format!("`{text}` is not a Polaris event category"),
                    fix: "use a category from `polaris-bridge event-types`, e.g. TABLE or VIEW"
                        .into(),
                }),
            }
        }
        if let Some(text) = spec.phase {
            match text.parse::<Phase>() {
                Ok(phase) => filter.phase = Some(phase),
                Err(_) => problems.push(FilterProblem {
                    field: "phase",
                    problem: format!("`{text}` is not a phase"),
                    fix: "use `before` or `after`, or leave it out".into(),
                }),
            }
        }
        for (field, text, slot) in [
            ("catalog", spec.catalog, &mut filter.catalog),
            ("namespace", spec.namespace, &mut filter.namespace),
            ("table", spec.table, &mut filter.table),
        ] {
            if let Some(text) = text {
                *slot = glob(field, text, &mut problems);
            }
        }
        if problems.is_empty() {
            Ok(filter)
        } else {
            Err(problems)
        }
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &PolarisEvent) -> bool {
        // The namespace path is built only when a namespace pattern needs it.
        let namespace = self.namespace.as_ref().and(event.namespace_path());
        self.matches_with_namespace(event, namespace.as_deref())
    }

    /// Whether `event` passes, given its namespace path (`event.namespace_path()`, computed
    /// once by a caller that checks many filters).
    pub fn matches_with_namespace(&self, event: &PolarisEvent, namespace: Option<&str>) -> bool {
        let event_type = &event.event_type;
        if !self.event_types.is_empty()
            && !self
                .event_types
                .iter()
                .any(|p| p.matches(event_type.name()))
        {
            return false;
        }
        if !self.categories.is_empty()
            && !event_type
                .category()
                .is_some_and(|c| self.categories.contains(&c))
        {
            return false;
        }
        if self
            .phase
            .is_some_and(|phase| event_type.phase() != Some(phase))
        {
            return false;
        }
        let field = |pattern: &Option<Pattern>, value: Option<&str>| match pattern {
            None => true,
            Some(p) => value.is_some_and(|v| p.matches(v)),
        };
        field(&self.catalog, event.catalog_name.as_deref())
            && field(&self.namespace, namespace)
            && field(&self.table, event.object_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, catalog: &str, ns: &[&str], table: &str) -> PolarisEvent {
        let mut e = PolarisEvent::new(EventType::from_name(kind));
        e.catalog_name = Some(catalog.into());
        e.namespace = Some(ns.iter().map(|s| s.to_string()).collect());
        e.table_name = Some(table.into());
        e
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_criterion_must_match() {
        let types = strings(&["AFTER_*_TABLE"]);
        let categories = strings(&["TABLE"]);
        let filter = EventFilter::compile(&FilterSpec {
            event_types: &types,
            categories: &categories,
            phase: Some("after"),
            catalog: Some("prod*"),
            namespace: Some("sales.*"),
            table: Some("orders"),
        })
        .unwrap();
        let hit = event("AFTER_DROP_TABLE", "prod", &["sales", "eu"], "orders");
        assert!(filter.matches(&hit));
        for miss in [
            event("BEFORE_DROP_TABLE", "prod", &["sales", "eu"], "orders"),
            event("AFTER_DROP_VIEW", "prod", &["sales", "eu"], "orders"),
            event("AFTER_DROP_TABLE", "dev", &["sales", "eu"], "orders"),
            event("AFTER_DROP_TABLE", "prod", &["hr"], "orders"),
            event("AFTER_DROP_TABLE", "prod", &["sales", "eu"], "orders_2"),
        ] {
            assert!(!filter.matches(&miss), "{miss:?}");
        }
        assert!(EventFilter::default().matches(&hit), "empty matches all");
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let types = strings(&["AFTER_DROP_TABEL", "AFTER_[", "AFTER_*"]);
        let categories = strings(&["TABLES"]);
        let problems = EventFilter::compile(&FilterSpec {
            event_types: &types,
            categories: &categories,
            phase: Some("during"),
            catalog: Some("[x"),
            ..FilterSpec::default()
        })
        .unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            vec![
                "event_types",
                "event_types",
                "categories",
                "phase",
                "catalog"
            ]
        );
        assert!(problems[0].problem.contains("AFTER_DROP_TABEL"));
    }
}
