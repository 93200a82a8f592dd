//! Routing: which connector instances an event becomes tasks for.

use polaris_bridge_api::filter::EventFilter;
use polaris_bridge_api::PolarisEvent;

use crate::config::RouteConfig;

/// A routing error: a rule that does not compile (config validation catches these first).
#[derive(Debug, thiserror::Error)]
#[error("routes[{index}].{field}: {message}")]
pub struct RouteError {
    /// Rule index.
    pub index: usize,
    /// The offending field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// One compiled rule.
#[derive(Debug)]
struct Rule {
    /// Index of the target connector in [`Router::connectors`].
    target: usize,
    filter: EventFilter,
}

/// The compiled routing table.
#[derive(Debug)]
pub struct Router {
    connectors: Vec<String>,
    rules: Vec<Rule>,
}

impl Router {
    /// Compiles the rules. `connectors` lists the instance names; a rule's connector must be
    /// one of them.
    pub fn new(routes: &[RouteConfig], connectors: &[String]) -> Result<Router, RouteError> {
        let mut rules = Vec::with_capacity(routes.len());
        for (index, route) in routes.iter().enumerate() {
            let target = connectors
                .iter()
                .position(|c| c == &route.connector)
                .ok_or_else(|| RouteError {
                    index,
                    field: "connector",
                    message: format!("no connector named `{}`", route.connector),
                })?;
            let filter = EventFilter::compile(&route.filter_spec()).map_err(|problems| {
                let first = problems.into_iter().next();
                RouteError {
                    index,
                    field: first.as_ref().map_or("filter", |p| p.field),
                    message: first
                        .map_or_else(String::new, |p| format!("{}: {}", p.problem, p.fix)),
                }
            })?;
            rules.push(Rule { target, filter });
        }
        Ok(Router {
            connectors: connectors.to_vec(),
            rules,
        })
    }

    /// The connector names, in the order [`Router::route`] refers to them.
    pub fn connectors(&self) -> &[String] {
        &self.connectors
    }

    /// Indexes (into [`Router::connectors`]) of the connectors `event` goes to, each once,
    /// in ascending order.
    pub fn route(&self, event: &PolarisEvent, out: &mut Vec<usize>) {
        out.clear();
        let namespace = event.namespace_path();
        for rule in &self.rules {
            if out.contains(&rule.target)
                || !rule
                    .filter
                    .matches_with_namespace(event, namespace.as_deref())
            {
                continue;
            }
            out.push(rule.target);
        }
        out.sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polaris_bridge_api::event::EventType;

    fn route(connector: &str) -> RouteConfig {
        RouteConfig {
            connector: connector.into(),
            event_types: vec![],
            categories: vec![],
            phase: None,
            catalog: None,
            namespace: None,
            table: None,
        }
    }

    fn event(kind: &str, catalog: &str, ns: &[&str], table: &str) -> PolarisEvent {
        let mut e = PolarisEvent::new(EventType::from_name(kind));
        e.catalog_name = Some(catalog.into());
        e.namespace = Some(ns.iter().map(|s| s.to_string()).collect());
        e.table_name = Some(table.into());
        e
    }

    #[test]
    fn rules_select_by_every_criterion() {
        let connectors = vec![
            "all".to_string(),
            "drops".into(),
            "sales".into(),
            "before".into(),
        ];
        let mut drops = route("drops");
        drops.event_types = vec!["AFTER_DROP_TABLE".into()];
        let mut sales = route("sales");
        sales.categories = vec!["TABLE".into()];
        sales.catalog = Some("prod*".into());
        sales.namespace = Some("sales.*".into());
        sales.table = Some("orders_?".into());
        let mut before = route("before");
        before.phase = Some("before".into());
        before.event_types = vec!["*_TABLE".into()];
        let router = Router::new(&[route("all"), drops, sales, before], &connectors).unwrap();
        let mut out = Vec::new();

        router.route(
            &event("AFTER_DROP_TABLE", "prod", &["sales", "eu"], "orders_1"),
            &mut out,
        );
        assert_eq!(out, vec![0, 1, 2]);
        router.route(
            &event("AFTER_DROP_TABLE", "dev", &["sales", "eu"], "orders_1"),
            &mut out,
        );
        assert_eq!(out, vec![0, 1], "catalog glob");
        router.route(
            &event("AFTER_CREATE_TABLE", "prod", &["hr"], "orders_1"),
            &mut out,
        );
        assert_eq!(out, vec![0], "namespace glob");
        router.route(
            &event("AFTER_CREATE_TABLE", "prod", &["sales", "us"], "orders_12"),
            &mut out,
        );
        assert_eq!(out, vec![0], "table glob");
        router.route(&event("BEFORE_CREATE_TABLE", "x", &["y"], "z"), &mut out);
        assert_eq!(out, vec![0, 3], "phase");
        router.route(
            &event("AFTER_CREATE_VIEW", "prod", &["sales", "eu"], "orders_1"),
            &mut out,
        );
        assert_eq!(out, vec![0], "category");
    }

    #[test]
    fn unknown_connector_is_an_error() {
        let err = Router::new(&[route("nope")], &["a".to_string()]).unwrap_err();
        assert!(err.to_string().contains("routes[0].connector"), "{err}");
    }
}
