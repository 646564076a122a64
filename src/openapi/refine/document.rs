//! Finding a schema or a property in the generated document, and restating a property's type keywords.

use serde_json::Value;

pub(super) fn schema<'a>(document: &'a mut Value, name: &str) -> &'a mut Value {
    let schema = &mut document["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name} in the document");
    schema
}

pub(super) fn property<'a>(document: &'a mut Value, name: &str, field: &str) -> &'a mut Value {
    let property = &mut schema(document, name)["properties"][field];
    assert!(property.is_object(), "no property {name}.{field}");
    property
}

/// Replaces a property's type keywords, keeping its description.
pub(super) fn restate(document: &mut Value, name: &str, field: &str, with: Value) {
    let property = property(document, name, field);
    let description = property.get("description").cloned();
    *property = with;
    if let Some(description) = description {
        property["description"] = description;
    }
}
