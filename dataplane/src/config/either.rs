//! Deserializers for "a string or a struct" fields. Serde's untagged enums would say only "data
//! did not match any variant"; these pass the struct's own error through, so a typo inside the
//! struct form is named (`unknown field \`wieght\``).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::{EndpointSpec, HeaderMatchSpec, HeaderRuleSpec, WeightedEndpointSpec};

struct StrOrMap<T>(PhantomData<T>, &'static str);

trait FromEither: Sized {
    fn from_str(s: String) -> Self;
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

impl<'de, T: FromEither> Visitor<'de> for StrOrMap<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Ok(T::from_str(v.to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_map(map)
    }
}

impl FromEither for EndpointSpec {
    fn from_str(s: String) -> Self {
        EndpointSpec::Address(s)
    }
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        WeightedEndpointSpec::deserialize(de::value::MapAccessDeserializer::new(map))
            .map(EndpointSpec::Weighted)
    }
}

impl FromEither for HeaderMatchSpec {
    fn from_str(s: String) -> Self {
        HeaderMatchSpec::Exact(s)
    }
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        HeaderRuleSpec::deserialize(de::value::MapAccessDeserializer::new(map))
            .map(HeaderMatchSpec::Rule)
    }
}

impl<'de> Deserialize<'de> for EndpointSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrOrMap(
            PhantomData,
            "\"host:port\" or { address, weight }",
        ))
    }
}

impl<'de> Deserialize<'de> for HeaderMatchSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrOrMap(
            PhantomData,
            "a string (exact match) or { exact | present | regex }",
        ))
    }
}
