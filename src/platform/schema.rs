//! The product schemas: the tables each product keeps on its shards, how their synthetic rows are
//! shaped, and which text of each row the full-text index holds. Every table has `site` and `id`
//! columns and the primary key `(site, id)`.

/// How a column's synthetic values look.
pub(crate) enum Col {
    /// Between `min` and `max` words of filler text.
    Words(usize, usize),
    /// A unique address, built from the row id and the site.
    Email,
    Choice(&'static [&'static str]),
    /// The id of one of the site's issues (in the `issues` product).
    IssueRef,
}

pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Col)],
    /// Rows per unit of the product's row count.
    pub per_unit: f64,
    /// SQL expression for the row's text in the full-text index.
    pub fts: &'static str,
}

pub(crate) struct Product {
    pub name: &'static str,
    /// Row units per GB of the product's size.
    pub units_per_gb: f64,
    pub tables: &'static [Table],
}

pub(crate) const PRODUCTS: &[Product] = &[
    Product {
        name: "identity",
        units_per_gb: 200.0,
        tables: &[Table {
            name: "users",
            columns: &[("name", Col::Words(2, 3)), ("email", Col::Email)],
            per_unit: 1.0,
            fts: "name || ' ' || email",
        }],
    },
    Product {
        name: "issues",
        units_per_gb: 25.0,
        tables: &[
            Table {
                name: "issues",
                columns: &[("title", Col::Words(3, 7)), ("body", Col::Words(10, 40))],
                per_unit: 1.0,
                fts: "title || ' ' || body",
            },
            Table {
                name: "comments",
                columns: &[("issue_id", Col::IssueRef), ("body", Col::Words(5, 25))],
                per_unit: 1.5,
                fts: "body",
            },
        ],
    },
    Product {
        name: "wiki",
        units_per_gb: 25.0,
        tables: &[Table {
            name: "pages",
            columns: &[("title", Col::Words(2, 5)), ("body", Col::Words(20, 60))],
            per_unit: 1.0,
            fts: "title || ' ' || body",
        }],
    },
    Product {
        name: "service-desk",
        units_per_gb: 60.0,
        tables: &[Table {
            name: "tickets",
            columns: &[("issue_id", Col::IssueRef), ("subject", Col::Words(3, 8))],
            per_unit: 1.0,
            fts: "subject",
        }],
    },
    Product {
        name: "alerts",
        units_per_gb: 100.0,
        tables: &[Table {
            name: "schedules",
            columns: &[("name", Col::Words(1, 3)), ("rule", Col::Words(4, 10))],
            per_unit: 1.0,
            fts: "name || ' ' || rule",
        }],
    },
    Product {
        name: "status-page",
        units_per_gb: 100.0,
        tables: &[Table {
            name: "components",
            columns: &[
                ("name", Col::Words(1, 3)),
                (
                    "status",
                    Col::Choice(&["operational", "degraded", "outage"]),
                ),
            ],
            per_unit: 1.0,
            fts: "name || ' ' || status",
        }],
    },
];

pub(crate) const FTS_DDL: &str =
    "CREATE VIRTUAL TABLE fts USING fts5(site UNINDEXED, doc UNINDEXED, text)";

pub(crate) fn product(name: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.name == name)
}

impl Product {
    /// Row units of a product of `gb` GB: at least 3, at most 3,000.
    pub fn units(&self, gb: f64) -> u64 {
        (gb * self.units_per_gb).ceil().clamp(3.0, 3000.0) as u64
    }

    /// The tables and the full-text index of a shard of this product.
    pub fn ddl(&self) -> String {
        let mut out: Vec<String> = self.tables.iter().map(Table::ddl).collect();
        out.push(FTS_DDL.to_owned());
        out.join(";\n")
    }
}

impl Product {
    /// The product's tables in a PostgreSQL schema (no full-text index: a PostgreSQL shard would
    /// index with an expression index, derived by the server). A table with an issue reference
    /// on the shard that holds the issues has a foreign key to them.
    pub fn pg_ddl(&self, schema: &str) -> String {
        let q = |t: &str| crate::pgslice::qualified(schema, t);
        let has_issues = self.tables.iter().any(|t| t.name == "issues");
        let mut out = vec![format!("CREATE SCHEMA {}", crate::pgslice::ident(schema))];
        for table in self.tables {
            let mut cols = vec![
                "site text NOT NULL".to_owned(),
                "id bigint NOT NULL".to_owned(),
            ];
            let mut fk = None;
            for (name, col) in table.columns {
                let ty = if matches!(col, Col::IssueRef) {
                    "bigint"
                } else {
                    "text"
                };
                cols.push(format!("{name} {ty} NOT NULL"));
                if matches!(col, Col::IssueRef) && has_issues {
                    fk = Some(format!(
                        "FOREIGN KEY (site, {name}) REFERENCES {} (site, id)",
                        q("issues")
                    ));
                }
            }
            cols.push("PRIMARY KEY (site, id)".to_owned());
            cols.extend(fk);
            out.push(format!(
                "CREATE TABLE {} ({})",
                q(table.name),
                cols.join(", ")
            ));
        }
        out.join(";\n")
    }
}

impl Table {
    pub fn rows(&self, units: u64) -> u64 {
        (units as f64 * self.per_unit).round() as u64
    }

    fn ddl(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|(name, col)| {
                let ty = if matches!(col, Col::IssueRef) {
                    "INTEGER"
                } else {
                    "TEXT"
                };
                format!("{name} {ty} NOT NULL")
            })
            .collect();
        format!(
            "CREATE TABLE {} (site TEXT NOT NULL, id INTEGER NOT NULL, {}, PRIMARY KEY (site, id))",
            self.name,
            cols.join(", ")
        )
    }

    /// `site, id, <columns>`: the canonical column order.
    pub fn column_list(&self) -> String {
        self.column_names().join(", ")
    }

    /// `site`, `id`, then the table's own columns.
    pub fn column_names(&self) -> Vec<&'static str> {
        let mut cols = vec!["site", "id"];
        cols.extend(self.columns.iter().map(|(name, _)| *name));
        cols
    }

    /// Selects `(site, doc, text)` index entries of site `?1` from this table in `schema`.
    pub fn index_select(&self, schema: &str) -> String {
        format!(
            "SELECT site, '{t}/' || id, {fts} FROM {schema}.{t} WHERE site = ?1",
            t = self.name,
            fts = self.fts
        )
    }
}
