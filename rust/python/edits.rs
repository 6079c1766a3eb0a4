//! `EditPlan`: a compiled edit list (see `_core.pyi`), built from the plain tuples Python's
//! `fastpush.dataset.edits` compiles, shared by every send that applies it.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::args::{conversion, dataset, Dataset};
use crate::convert::edit::{self, Action, Rule, Scope, Selector, Value};
use crate::convert::{self, Gathered, Plan, Syntax};
use crate::error::{Error, Result};
use crate::send::file;

/// One rule as Python gives it: `(selector, scope, action, value, vr)`.
type RuleTuple<'py> = (
    Bound<'py, PyAny>,
    Option<Vec<u32>>,
    String,
    Option<Bound<'py, PyAny>>,
    Option<String>,
);

#[pyclass(frozen, module = "fastpush._core")]
pub struct EditPlan {
    pub(crate) plan: Arc<Plan>,
}

fn bad(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

fn selector(obj: &Bound<'_, PyAny>) -> PyResult<Selector> {
    if let Ok(tag) = obj.extract::<u32>() {
        return Ok(Selector::Tag(tag));
    }
    if let Ok((kind, mask, value)) = obj.extract::<(String, u32, u32)>() {
        if kind == "masked" {
            return Ok(Selector::Masked { mask, value });
        }
    }
    if let Ok((kind, group, creator, element)) = obj.extract::<(String, u16, String, u8)>() {
        if kind == "private" {
            return Ok(Selector::Private {
                group,
                creator,
                element,
            });
        }
    }
    Err(bad(format!("bad rule selector {obj}")).into())
}

fn vr_arg(vr: Option<String>) -> Result<Option<[u8; 2]>> {
    vr.map(|v| match v.as_bytes() {
        [a, b] => Ok([*a, *b]),
        _ => Err(bad(format!("bad VR {v:?}"))),
    })
    .transpose()
}

fn rule(t: RuleTuple<'_>) -> PyResult<Rule> {
    let (sel, scope, action, value, vr) = t;
    let scope = match scope {
        None => Scope::Anywhere,
        Some(path) if path.is_empty() => Scope::Top,
        Some(path) => Scope::Path(path),
    };
    let vr = vr_arg(vr)?;
    let text = |v: &Option<Bound<'_, PyAny>>| -> PyResult<String> {
        match v {
            Some(v) => v.extract::<String>(),
            None => Err(bad(format!("{action} needs a value")).into()),
        }
    };
    let set = |value: Value, insert: bool| Action::Set { value, vr, insert };
    let action = match action.as_str() {
        "keep" => Action::Keep,
        "remove" => Action::Remove,
        "empty" => Action::Empty,
        "dummy" => Action::Dummy,
        "map_uid" => Action::MapUid,
        "shift_date" => Action::ShiftDate,
        "prefix" => Action::Prefix(text(&value)?),
        "set" | "replace" => set(Value::Text(text(&value)?), action == "set"),
        "copy" => {
            let from = value
                .as_ref()
                .ok_or_else(|| bad("copy needs a source tag".into()))?
                .extract::<u32>()?;
            set(Value::Copy(from), true)
        }
        "pseudonym" => set(Value::Pseudonym, false),
        "set_items" => {
            let items: Vec<Vec<(u32, String, String)>> = value
                .as_ref()
                .ok_or_else(|| bad("set_items needs items".into()))?
                .extract()?;
            let items = items
                .into_iter()
                .map(|item| {
                    item.into_iter()
                        .map(|(t, v, text)| Ok((t, vr_arg(Some(v))?.expect("given"), text)))
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<Vec<_>>>()?;
            set(Value::Items(items), true)
        }
        other => return Err(bad(format!("unknown edit action {other:?}")).into()),
    };
    Ok(Rule {
        selector: selector(&sel)?,
        scope,
        action,
    })
}

#[pymethods]
impl EditPlan {
    #[new]
    #[pyo3(signature = (rules, *, key=None, private=None, map_uids=false, refuse_burned_in=false))]
    fn new(
        rules: Vec<RuleTuple<'_>>,
        key: Option<&Bound<'_, PyBytes>>,
        private: Option<String>,
        map_uids: bool,
        refuse_burned_in: bool,
    ) -> PyResult<Self> {
        let rules = rules.into_iter().map(rule).collect::<PyResult<Vec<_>>>()?;
        let mut plan = Plan::new(rules);
        plan.key = key.map(|k| k.as_bytes().to_vec()).unwrap_or_default();
        plan.private = match private.as_deref() {
            None => None,
            Some("remove") => Some(Action::Remove),
            Some(other) => {
                return Err(bad(format!("private must be 'remove', not {other:?}")).into())
            }
        };
        plan.map_uids = map_uids;
        plan.refuse_burned_in = refuse_burned_in;
        Ok(EditPlan {
            plan: Arc::new(plan),
        })
    }

    /// The SOP Instance UID a dataset whose UID is `uid` carries once edited.
    fn instance_uid(&self, uid: &str) -> String {
        self.plan.instance_uid(uid.trim_end_matches(['\0', ' ']))
    }

    /// `uid` mapped with the plan's key.
    fn map_uid(&self, uid: &str) -> String {
        edit::map_uid(&self.plan.key, uid)
    }

    /// The pseudonym of a Patient ID under the plan's key.
    fn pseudonym(&self, patient_id: &str) -> String {
        edit::pseudonym(&self.plan.key, edit::trim(patient_id.as_bytes()))
    }

    /// Edit (and convert) a whole dataset (GIL released); tests and tools, sending streams.
    fn edit_dataset<'py>(
        &self,
        py: Python<'py>,
        dataset: &Bound<'py, PyAny>,
        from_syntax: String,
        to_syntax: String,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let source = self::dataset(py, Some(dataset))?.expect("a dataset was given");
        let data = source.as_slice();
        let (from, to) = conversion(Some((from_syntax, to_syntax)))?.expect("a conversion");
        let plan = &*self.plan;
        let out = py
            .detach(|| convert::edit_to_vec(data, from, to, plan))
            .map_err(|e| Error::Edit(e.to_string()))?;
        Ok(PyBytes::new(py, &out))
    }

    /// Write `prefix` (the file meta), then the dataset edited (and converted), to a new file
    /// at `path` (GIL released); the values the edits leave alone are copied file to file by the
    /// kernel. Returns the bytes written; on an error no file is left.
    #[pyo3(signature = (dataset, from_syntax, to_syntax, path, prefix=None))]
    fn write_edited(
        &self,
        py: Python<'_>,
        dataset: &Bound<'_, PyAny>,
        from_syntax: String,
        to_syntax: String,
        path: PathBuf,
        prefix: Option<&Bound<'_, PyBytes>>,
    ) -> PyResult<u64> {
        let source = self::dataset(py, Some(dataset))?.expect("a dataset was given");
        let file = match &source {
            Dataset::Region(region) => Some(region.file()),
            Dataset::Bytes(_) => None,
        };
        let data = (source.as_slice(), file);
        let conversion = conversion(Some((from_syntax, to_syntax)))?.expect("a conversion");
        let prefix = prefix.map_or(&[][..], |p| p.as_bytes());
        let plan = &*self.plan;
        Ok(py.detach(|| file::write_edited(&path, prefix, data, conversion, plan))?)
    }

    fn __repr__(&self) -> String {
        "<fastpush._core.EditPlan>".to_string()
    }
}

/// Gather what the plan needs and check the whole edit (GIL released) before anything is sent.
pub(crate) fn prepared(
    py: Python<'_>,
    plan: &Plan,
    ds: &[u8],
    (from, to): (Syntax, Syntax),
) -> Result<Gathered> {
    py.detach(|| {
        let gathered = convert::gather(ds, from, plan)?;
        convert::check_edits(ds, from, to, plan, &gathered)?;
        Ok(gathered)
    })
    .map_err(|e: convert::ConvertError| Error::Edit(e.to_string()))
}
