//! Creates the template's resources in the local services (idempotently).

use crate::template::{IndexSpec, KeyElement, TableSpec};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, LocalSecondaryIndex,
    Projection, ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;
use std::collections::{HashMap, HashSet};

/// Attributes learnt while creating resources, by (logical id, attribute name).
pub type Attributes = HashMap<(String, String), String>;

fn sdk_err<E: std::fmt::Debug>(what: &str, e: E) -> String {
    format!("{what}: {e:?}")
}

async fn existing_tables(client: &Client) -> Result<HashSet<String>, String> {
    let mut names = HashSet::new();
    let mut start: Option<String> = None;
    loop {
        let out = client
            .list_tables()
            .set_exclusive_start_table_name(start.take())
            .send()
            .await
            .map_err(|e| sdk_err("ListTables", e))?;
        names.extend(out.table_names().iter().cloned());
        match out.last_evaluated_table_name() {
            Some(last) => start = Some(last.to_string()),
            None => return Ok(names),
        }
    }
}

fn key_schema(keys: &[KeyElement]) -> Result<Vec<KeySchemaElement>, String> {
    keys.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

fn projection(ix: &IndexSpec) -> Projection {
    let mut p = Projection::builder().projection_type(ProjectionType::from(ix.projection_type.as_str()));
    for a in &ix.non_key_attributes {
        p = p.non_key_attributes(a);
    }
    p.build()
}

fn attribute_definitions(t: &TableSpec) -> Result<Vec<AttributeDefinition>, String> {
    t.attribute_definitions
        .iter()
        .map(|(name, ty)| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::from(ty.as_str()))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

async fn create_table(client: &Client, t: &TableSpec) -> Result<(), String> {
    let ctx = |what: &str| format!("CreateTable {} ({what})", t.name);
    let mut req = client
        .create_table()
        .table_name(&t.name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&t.key_schema).map_err(|e| ctx(&e))?));
    req = req.set_attribute_definitions(Some(attribute_definitions(t).map_err(|e| ctx(&e))?));
    for ix in &t.global_secondary_indexes {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&ix.name)
                .set_key_schema(Some(key_schema(&ix.key_schema).map_err(|e| ctx(&e))?))
                .projection(projection(ix))
                .build()
                .map_err(|e| ctx(&e.to_string()))?,
        );
    }
    for ix in &t.local_secondary_indexes {
        req = req.local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .index_name(&ix.name)
                .set_key_schema(Some(key_schema(&ix.key_schema).map_err(|e| ctx(&e))?))
                .projection(projection(ix))
                .build()
                .map_err(|e| ctx(&e.to_string()))?,
        );
    }
    if let Some(view) = &t.stream_view_type {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view.as_str()))
                .build()
                .map_err(|e| ctx(&e.to_string()))?,
        );
    }
    req.send()
        .await
        .map_err(|e| sdk_err(&format!("CreateTable {}", t.name), e))?;
    Ok(())
}

async fn ensure_ttl(client: &Client, t: &TableSpec, attr: &str) -> Result<(), String> {
    let current = client
        .describe_time_to_live()
        .table_name(&t.name)
        .send()
        .await
        .map_err(|e| sdk_err("DescribeTimeToLive", e))?;
    let enabled = current
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status())
        .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
    if enabled {
        return Ok(());
    }
    let spec = TimeToLiveSpecification::builder()
        .attribute_name(attr)
        .enabled(true)
        .build()
        .map_err(|e| e.to_string())?;
    client
        .update_time_to_live()
        .table_name(&t.name)
        .time_to_live_specification(spec)
        .send()
        .await
        .map_err(|e| sdk_err("UpdateTimeToLive", e))?;
    Ok(())
}

/// Brings an existing table's global secondary indexes to the template's, as a deploy of the
/// changed template would: indexes the template dropped are deleted, new ones created (one per
/// `UpdateTable`, as DynamoDB requires). Data kept in `.local/data` thus survives a change of
/// indexes.
async fn sync_indexes(client: &Client, t: &TableSpec, have: &[String]) -> Result<(), String> {
    let want: HashSet<&str> = t
        .global_secondary_indexes
        .iter()
        .map(|ix| ix.name.as_str())
        .collect();
    for name in have.iter().filter(|n| !want.contains(n.as_str())) {
        let delete = aws_sdk_dynamodb::types::DeleteGlobalSecondaryIndexAction::builder()
            .index_name(name)
            .build()
            .map_err(|e| e.to_string())?;
        client
            .update_table()
            .table_name(&t.name)
            .global_secondary_index_updates(
                aws_sdk_dynamodb::types::GlobalSecondaryIndexUpdate::builder()
                    .delete(delete)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_err(&format!("UpdateTable {} (delete index {name})", t.name), e))?;
        eprintln!(
            "twin: table {}: index {name} deleted (not in the template)",
            t.name
        );
    }
    for ix in t
        .global_secondary_indexes
        .iter()
        .filter(|ix| !have.contains(&ix.name))
    {
        let create = aws_sdk_dynamodb::types::CreateGlobalSecondaryIndexAction::builder()
            .index_name(&ix.name)
            .set_key_schema(Some(key_schema(&ix.key_schema)?))
            .projection(projection(ix))
            .build()
            .map_err(|e| e.to_string())?;
        let mut req = client
            .update_table()
            .table_name(&t.name)
            .global_secondary_index_updates(
                aws_sdk_dynamodb::types::GlobalSecondaryIndexUpdate::builder()
                    .create(create)
                    .build(),
            );
        req = req.set_attribute_definitions(Some(attribute_definitions(t)?));
        req.send()
            .await
            .map_err(|e| sdk_err(&format!("UpdateTable {} (create index {})", t.name, ix.name), e))?;
        eprintln!(
            "twin: table {}: index {} created (new in the template)",
            t.name, ix.name
        );
    }
    Ok(())
}

/// Create every table that does not exist yet; returns the tables' Arn / StreamArn.
pub async fn create_tables(client: &Client, tables: &[TableSpec]) -> Result<Attributes, String> {
    let existing = existing_tables(client).await?;
    let mut attrs = Attributes::new();
    for t in tables {
        let state = if existing.contains(&t.name) {
            "exists"
        } else {
            create_table(client, t).await?;
            "created"
        };
        if let Some(attr) = &t.ttl_attribute {
            if let Err(e) = ensure_ttl(client, t, attr).await {
                eprintln!(
                    "twin: warning: TTL on {} ({attr}) not set by DynamoDB Local: {e}",
                    t.name
                );
            }
        }
        let desc = client
            .describe_table()
            .table_name(&t.name)
            .send()
            .await
            .map_err(|e| sdk_err(&format!("DescribeTable {}", t.name), e))?;
        if let (Some(table), "exists") = (desc.table(), state) {
            let have: Vec<String> = table
                .global_secondary_indexes()
                .iter()
                .filter_map(|ix| ix.index_name().map(str::to_owned))
                .collect();
            sync_indexes(client, t, &have).await?;
        }
        if let Some(table) = desc.table() {
            if let Some(arn) = table.table_arn() {
                attrs.insert((t.logical_id.clone(), "Arn".into()), arn.to_string());
            }
            if let Some(arn) = table.latest_stream_arn() {
                attrs.insert((t.logical_id.clone(), "StreamArn".into()), arn.to_string());
            }
        }
        eprintln!("twin: table {:<28} {state}", t.name);
    }
    Ok(attrs)
}
