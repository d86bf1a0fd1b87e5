//! PyTorch checkpoints read from bytes in memory, in the browser as natively.
//!
//! Written by hand because no kept library does this on wasm: burn-store's
//! `PytorchStore` (pytorch-reader 0.22.1) parses these files well but opens
//! legacy checkpoints only through `std::fs::File`, which
//! `wasm32-unknown-unknown` does not have, and `serde-pickle` rejects the
//! persistent ids that point a tensor at its storage. The tests check this
//! reader tensor-for-tensor against `PytorchStore` on HD-BET's real files.
//!
//! Only the *legacy* container (`torch.save(..., _use_new_zipfile_serialization=False)`,
//! and every `torch.save` before PyTorch 1.6) is read, as HD-BET ships it:
//!
//! ```text
//! pickle(magic number) pickle(1001) pickle(sys_info) pickle(object with persistent ids)
//! pickle([storage keys]) then per key: u64 element count, raw little-endian elements
//! ```
//!
//! The pickle machine below builds values and never runs code: a global such as
//! `torch._utils._rebuild_tensor` is only a name that tells it how to read the
//! arguments. Everything read from the file is bounded by the file's own length.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// What went wrong, said so that a user can act on it.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a PyTorch checkpoint: {0}")]
    NotCheckpoint(String),
    #[error("this PyTorch file is saved in the zip format (PyTorch 1.6 or later); bedside reads the legacy format HD-BET ships in")]
    ZipFormat,
    #[error("the checkpoint is truncated: {0}")]
    Truncated(String),
    #[error("the checkpoint is malformed: {0}")]
    Malformed(String),
}

/// One floating-point tensor of a checkpoint, converted to f32, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointTensor {
    pub shape: Vec<usize>,
    /// The stored element type, e.g. "float32" or "float16".
    pub dtype: &'static str,
    pub values: Vec<f32>,
}

/// The tensors of a checkpoint's state dict, by their `state_dict` names.
#[derive(Debug, Default)]
pub struct Checkpoint {
    pub tensors: Vec<(String, CheckpointTensor)>,
    /// Names of tensors that are not floating point (e.g. `num_batches_tracked`), not converted.
    pub skipped: Vec<String>,
}

/// Reads a legacy PyTorch checkpoint. The state dict is the top-level mapping,
/// or its `"state_dict"` entry when there is one (training checkpoints).
pub fn read_checkpoint(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(CheckpointError::ZipFormat);
    }
    if bytes.first() != Some(&0x80) {
        return Err(CheckpointError::NotCheckpoint("it does not start with a pickle".into()));
    }
    let mut machine = Machine::new(bytes);
    let magic = machine.run().map_err(|e| CheckpointError::NotCheckpoint(format!("no magic number ({e})")))?;
    if !matches!(magic, Value::Int(0x1950a86a20f9469cfc6c_i128)) {
        return Err(CheckpointError::NotCheckpoint("wrong magic number".into()));
    }
    let protocol = machine.run()?;
    if !matches!(protocol, Value::Int(1001)) {
        // Named, not Debug-printed: a hostile pickle's value can contain itself, and printing
        // it recursed until the stack overflowed (found by the `checkpoint` fuzz target).
        let shown = match protocol {
            Value::Int(n) => n.to_string(),
            _ => "not a number".to_string(),
        };
        return Err(CheckpointError::NotCheckpoint(format!("legacy protocol {shown}, expected 1001")));
    }
    let sys_info = machine.run()?;
    if let Some(Value::Bool(false)) = sys_info.get("little_endian") {
        return Err(CheckpointError::Malformed("saved on a big-endian machine".into()));
    }
    machine.storages_allowed = true;
    let root = machine.run()?;
    let keys = match machine.run()? {
        Value::List(keys) => keys.borrow().iter().map(|k| k.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>(),
        _ => None,
    }
    .ok_or_else(|| CheckpointError::Malformed("the storage key list is not a list of strings".into()))?;
    let storages = locate_storages(bytes, machine.pos, &keys, &machine.declared)?;

    let state = match root.get("state_dict") {
        Some(inner @ Value::Dict(_)) => inner,
        _ => root,
    };
    if !matches!(state, Value::Dict(_)) {
        return Err(CheckpointError::Malformed("the checkpoint holds no state dict (no name → tensor mapping)".into()));
    }
    let mut out = Checkpoint::default();
    collect_tensors(&state, "", &storages, &mut out)?;
    if out.tensors.is_empty() {
        return Err(CheckpointError::Malformed("the state dict holds no floating-point tensors".into()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Values

#[derive(Clone, Debug)]
enum Value {
    None,
    Bool(bool),
    /// Wide enough for the 80-bit magic number.
    Int(i128),
    /// Floats and byte strings occur (e.g. in metadata) but never locate a tensor: not kept.
    Float,
    Str(Rc<str>),
    Bytes,
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// `module.name`, a class or function the pickle refers to (never imported or called).
    Global(Rc<str>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// What calling a global we do not model produced; kept only by its name.
    Opaque(Rc<str>),
}

#[derive(Debug)]
struct StorageRef {
    key: String,
    dtype: Dtype,
}

#[derive(Debug)]
struct TensorRef {
    storage: Rc<StorageRef>,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl Value {
    fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_usize(&self) -> Option<usize> {
        match self {
            Value::Int(i) => usize::try_from(*i).ok(),
            _ => None,
        }
    }

    fn as_usizes(&self) -> Option<Vec<usize>> {
        match self {
            Value::Tuple(items) => items.iter().map(Value::as_usize).collect(),
            Value::List(items) => items.borrow().iter().map(Value::as_usize).collect(),
            _ => None,
        }
    }

    /// The value under string key `key`, when this is a mapping.
    fn get(&self, key: &str) -> Option<Value> {
        match self {
            Value::Dict(items) => items.borrow().iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v.clone()),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Storage element types

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dtype {
    F32,
    F64,
    F16,
    Bf16,
    /// An integer or boolean type of this many bytes (kept only to find storage boundaries).
    Other(usize),
}

impl Dtype {
    fn from_storage_class(name: &str) -> Option<Self> {
        let class = name.rsplit('.').next()?;
        Some(match class {
            "FloatStorage" => Dtype::F32,
            "DoubleStorage" => Dtype::F64,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::Bf16,
            "LongStorage" => Dtype::Other(8),
            "IntStorage" => Dtype::Other(4),
            "ShortStorage" => Dtype::Other(2),
            "CharStorage" | "ByteStorage" | "BoolStorage" => Dtype::Other(1),
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
            Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::Other(n) => n,
        }
    }

    fn name(self) -> Option<&'static str> {
        match self {
            Dtype::F32 => Some("float32"),
            Dtype::F64 => Some("float64"),
            Dtype::F16 => Some("float16"),
            Dtype::Bf16 => Some("bfloat16"),
            Dtype::Other(_) => None,
        }
    }

    fn decode(self, b: &[u8]) -> f32 {
        match self {
            Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Dtype::F64 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
            Dtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            Dtype::Bf16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            Dtype::Other(_) => unreachable!("only floating-point storages are decoded"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The pickle machine (protocols 0–5, the opcodes torch.save emits)

const MAX_MARK_DEPTH: usize = 10_000;

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Storage key → (element count, element type), from the persistent ids.
    declared: HashMap<String, (usize, Dtype)>,
    storages_allowed: bool,
    /// Every list and dict the pickles made. A hostile pickle can put a
    /// container inside itself (APPEND after MEMOIZE and GET), a cycle that
    /// reference counting never frees: they are emptied when the machine
    /// goes (found by the `checkpoint` fuzz target's leak check).
    containers: Vec<Value>,
}

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        for container in self.containers.drain(..) {
            match container {
                Value::List(items) => items.borrow_mut().clear(),
                Value::Dict(pairs) => pairs.borrow_mut().clear(),
                _ => {}
            }
        }
    }
}

impl From<String> for CheckpointError {
    fn from(message: String) -> Self {
        CheckpointError::Malformed(message)
    }
}

impl<'a> Machine<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0, declared: HashMap::new(), storages_allowed: false, containers: Vec::new() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CheckpointError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            CheckpointError::Truncated(format!("needed {n} more bytes at offset {} of {}", self.pos, self.bytes.len()))
        })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, CheckpointError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, CheckpointError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, CheckpointError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, CheckpointError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn len_u64(&mut self) -> Result<usize, CheckpointError> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| CheckpointError::Malformed(format!("length {n} is too large")))
    }

    fn line(&mut self) -> Result<&'a str, CheckpointError> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| CheckpointError::Truncated("a text field has no end of line".into()))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| CheckpointError::Malformed("a text field is not UTF-8".into()))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn text(&mut self, n: usize) -> Result<Value, CheckpointError> {
        let b = self.take(n)?;
        // Python 2 `str` (SHORT_BINSTRING) holds bytes; the names in checkpoints are ASCII.
        let s = String::from_utf8_lossy(b);
        Ok(Value::Str(Rc::from(s.as_ref())))
    }

    /// `value`, recorded if it is a container (see `containers`).
    fn kept(&mut self, value: Value) -> Value {
        if matches!(value, Value::List(_) | Value::Dict(_)) {
            self.containers.push(value.clone());
        }
        value
    }

    /// Runs one pickle to its STOP and returns its value.
    fn run(&mut self) -> Result<Value, CheckpointError> {
        let mut stack: Vec<Value> = Vec::new();
        let mut marks: Vec<usize> = Vec::new();
        let mut memo: HashMap<u32, Value> = HashMap::new();
        loop {
            let at = self.pos;
            let op = self.u8()?;
            let malformed = |what: &str| CheckpointError::Malformed(format!("{what} (opcode 0x{op:02x} at offset {at})"));
            let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| malformed("stack underflow"));
            let pop_mark = |stack: &mut Vec<Value>, marks: &mut Vec<usize>| -> Result<Vec<Value>, CheckpointError> {
                let m = marks.pop().ok_or_else(|| malformed("no MARK"))?;
                if m > stack.len() {
                    return Err(malformed("MARK above the stack"));
                }
                Ok(stack.split_off(m))
            };
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(malformed(&format!("pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => {
                    return pop(&mut stack);
                }
                b'(' => {
                    if marks.len() >= MAX_MARK_DEPTH {
                        return Err(malformed("nesting too deep"));
                    }
                    marks.push(stack.len());
                }
                b'0' => {
                    pop(&mut stack)?;
                }
                b'1' => {
                    pop_mark(&mut stack, &mut marks)?;
                }
                b'2' => {
                    let top = stack.last().cloned().ok_or_else(|| malformed("stack underflow"))?;
                    stack.push(top);
                }
                b'N' => stack.push(Value::None),
                0x88 => stack.push(Value::Bool(true)),
                0x89 => stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    stack.push(Value::Int(v.into()));
                }
                b'K' => {
                    let v = self.u8()?;
                    stack.push(Value::Int(v.into()));
                }
                b'M' => {
                    let v = self.u16()?;
                    stack.push(Value::Int(v.into()));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    if n > 16 {
                        return Err(malformed("integer wider than 128 bits"));
                    }
                    let b = self.take(n)?;
                    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xff; 16] } else { [0; 16] };
                    buf[..n].copy_from_slice(b);
                    stack.push(Value::Int(i128::from_le_bytes(buf)));
                }
                b'I' => {
                    let s = self.line()?;
                    stack.push(match s {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => Value::Int(s.parse().map_err(|_| malformed("bad INT"))?),
                    });
                }
                b'L' => {
                    let s = self.line()?.trim_end_matches('L');
                    stack.push(Value::Int(s.parse().map_err(|_| malformed("bad LONG"))?));
                }
                b'G' => {
                    self.take(8)?;
                    stack.push(Value::Float);
                }
                b'U' | 0x8c => {
                    let n = self.u8()? as usize;
                    stack.push(self.text(n)?);
                }
                b'T' | b'X' => {
                    let n = self.u32()? as usize;
                    stack.push(self.text(n)?);
                }
                0x8d => {
                    let n = self.len_u64()?;
                    stack.push(self.text(n)?);
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    stack.push(Value::Bytes);
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    stack.push(Value::Bytes);
                }
                0x8e => {
                    let n = self.len_u64()?;
                    self.take(n)?;
                    stack.push(Value::Bytes);
                }
                b'}' => stack.push(self.kept(Value::Dict(Rc::default()))),
                b']' => stack.push(self.kept(Value::List(Rc::default()))),
                b')' => stack.push(Value::Tuple(Rc::default())),
                b't' => {
                    let items = pop_mark(&mut stack, &mut marks)?;
                    stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if stack.len() < n {
                        return Err(malformed("stack underflow"));
                    }
                    let items = stack.split_off(stack.len() - n);
                    stack.push(Value::Tuple(Rc::new(items)));
                }
                b'l' => {
                    let items = pop_mark(&mut stack, &mut marks)?;
                    stack.push(self.kept(Value::List(Rc::new(RefCell::new(items)))));
                }
                b'd' => {
                    let items = pop_mark(&mut stack, &mut marks)?;
                    let dict = Value::Dict(Rc::new(RefCell::new(pairs(items).ok_or_else(|| malformed("odd DICT"))?)));
                    stack.push(self.kept(dict));
                }
                b'a' => {
                    let item = pop(&mut stack)?;
                    match stack.last() {
                        Some(Value::List(list)) => list.borrow_mut().push(item),
                        _ => return Err(malformed("APPEND to a non-list")),
                    }
                }
                b'e' => {
                    let items = pop_mark(&mut stack, &mut marks)?;
                    match stack.last() {
                        Some(Value::List(list)) => list.borrow_mut().extend(items),
                        _ => return Err(malformed("APPENDS to a non-list")),
                    }
                }
                b's' => {
                    let value = pop(&mut stack)?;
                    let key = pop(&mut stack)?;
                    match stack.last() {
                        Some(Value::Dict(dict)) => dict.borrow_mut().push((key, value)),
                        _ => return Err(malformed("SETITEM on a non-dict")),
                    }
                }
                b'u' => {
                    let items = pop_mark(&mut stack, &mut marks)?;
                    let items = pairs(items).ok_or_else(|| malformed("odd SETITEMS"))?;
                    match stack.last() {
                        Some(Value::Dict(dict)) => dict.borrow_mut().extend(items),
                        _ => return Err(malformed("SETITEMS on a non-dict")),
                    }
                }
                b'q' | b'r' | 0x94 | b'p' => {
                    let index = match op {
                        b'q' => self.u8()? as u32,
                        b'r' => self.u32()?,
                        b'p' => self.line()?.parse().map_err(|_| malformed("bad PUT"))?,
                        _ => memo.len() as u32,
                    };
                    let top = stack.last().cloned().ok_or_else(|| malformed("stack underflow"))?;
                    memo.insert(index, top);
                }
                b'h' | b'j' | b'g' => {
                    let index = match op {
                        b'h' => self.u8()? as u32,
                        b'j' => self.u32()?,
                        _ => self.line()?.parse().map_err(|_| malformed("bad GET"))?,
                    };
                    stack.push(memo.get(&index).cloned().ok_or_else(|| malformed("GET of an unset memo slot"))?);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    stack.push(Value::Global(Rc::from(format!("{module}.{name}"))));
                }
                0x93 => {
                    let name = pop(&mut stack)?;
                    let module = pop(&mut stack)?;
                    match (module.as_str(), name.as_str()) {
                        (Some(m), Some(n)) => stack.push(Value::Global(Rc::from(format!("{m}.{n}")))),
                        _ => return Err(malformed("STACK_GLOBAL of non-strings")),
                    }
                }
                b'R' => {
                    let args = pop(&mut stack)?;
                    let callable = pop(&mut stack)?;
                    let made = reduce(&callable, &args).map_err(|e| malformed(&e))?;
                    stack.push(self.kept(made));
                }
                0x81 => {
                    let _args = pop(&mut stack)?;
                    let class = pop(&mut stack)?;
                    stack.push(Value::Opaque(global_name(&class)));
                }
                b'b' => {
                    // BUILD sets an object's state (e.g. a state dict's `_metadata`); not needed.
                    pop(&mut stack)?;
                    if stack.is_empty() {
                        return Err(malformed("BUILD without an object"));
                    }
                }
                b'Q' => {
                    let pid = pop(&mut stack)?;
                    let storage = self.persistent_storage(&pid).map_err(|e| malformed(&e))?;
                    stack.push(storage);
                }
                other => {
                    return Err(CheckpointError::Malformed(format!(
                        "unsupported pickle opcode 0x{other:02x} at offset {at}"
                    )))
                }
            }
        }
    }

    /// A storage reference `('storage', <class>, key, location, numel, ...)`.
    fn persistent_storage(&mut self, pid: &Value) -> Result<Value, String> {
        if !self.storages_allowed {
            return Err("a storage reference in a header pickle".into());
        }
        let Value::Tuple(items) = pid else { return Err("persistent id is not a tuple".into()) };
        if items.first().and_then(Value::as_str) != Some("storage") || items.len() < 5 {
            return Err("persistent id is not a storage".into());
        }
        let class = global_name(&items[1]);
        let dtype = Dtype::from_storage_class(&class).ok_or_else(|| format!("unknown storage type {class}"))?;
        let key = items[2].as_str().ok_or("storage key is not a string")?.to_string();
        let numel = items[4].as_usize().ok_or("storage size is not a count")?;
        if numel.saturating_mul(dtype.size()) > self.bytes.len() {
            return Err(format!("storage {key} declares {numel} elements, more than the file holds"));
        }
        match self.declared.get(&key) {
            Some(&(n, d)) if (n, d) != (numel, dtype) => return Err(format!("storage {key} declared twice with different sizes")),
            _ => {
                self.declared.insert(key.clone(), (numel, dtype));
            }
        }
        Ok(Value::Storage(Rc::new(StorageRef { key, dtype })))
    }
}

fn pairs(items: Vec<Value>) -> Option<Vec<(Value, Value)>> {
    if items.len() % 2 != 0 {
        return None;
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Some(out)
}

fn global_name(v: &Value) -> Rc<str> {
    match v {
        Value::Global(name) | Value::Opaque(name) => name.clone(),
        _ => Rc::from("?"),
    }
}

/// What calling `callable(*args)` means for the globals checkpoints use.
fn reduce(callable: &Value, args: &Value) -> Result<Value, String> {
    let name = global_name(callable);
    let Value::Tuple(args) = args else { return Err(format!("arguments of {name} are not a tuple")) };
    match name.as_ref() {
        "collections.OrderedDict" => {
            let mut items = Vec::new();
            if let Some(Value::List(list)) = args.first() {
                for pair in list.borrow().iter() {
                    match pair {
                        Value::List(kv) if kv.borrow().len() == 2 => {
                            let kv = kv.borrow();
                            items.push((kv[0].clone(), kv[1].clone()));
                        }
                        Value::Tuple(kv) if kv.len() == 2 => items.push((kv[0].clone(), kv[1].clone())),
                        _ => return Err("OrderedDict item is not a pair".into()),
                    }
                }
            }
            Ok(Value::Dict(Rc::new(RefCell::new(items))))
        }
        "torch._utils._rebuild_tensor" | "torch._utils._rebuild_tensor_v2" => {
            let [Value::Storage(storage), offset, shape, stride, ..] = args.as_slice() else {
                return Err(format!("{name} without (storage, offset, size, stride)"));
            };
            let offset = offset.as_usize().ok_or("tensor offset is not a count")?;
            let shape = shape.as_usizes().ok_or("tensor size is not a tuple of counts")?;
            let stride = stride.as_usizes().ok_or("tensor stride is not a tuple of counts")?;
            if shape.len() != stride.len() {
                return Err("tensor size and stride differ in length".into());
            }
            Ok(Value::Tensor(Rc::new(TensorRef { storage: storage.clone(), offset, shape, stride })))
        }
        "torch._utils._rebuild_parameter" | "torch.nn.parameter.Parameter" => {
            args.first().cloned().ok_or_else(|| "Parameter without data".to_string())
        }
        _ => Ok(Value::Opaque(name)),
    }
}

// ---------------------------------------------------------------------------------------------
// Storages and tensors

/// Where each storage's elements lie in the file: the storages follow the key
/// list back to back, each after its u64 element count.
fn locate_storages<'b>(
    bytes: &'b [u8],
    mut pos: usize,
    keys: &[String],
    declared: &HashMap<String, (usize, Dtype)>,
) -> Result<HashMap<String, &'b [u8]>, CheckpointError> {
    let mut out = HashMap::with_capacity(keys.len());
    for key in keys {
        let &(numel, dtype) = declared
            .get(key)
            .ok_or_else(|| CheckpointError::Malformed(format!("storage {key} is listed but never used")))?;
        let header = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| CheckpointError::Truncated(format!("the file ends before storage {key}")))?;
        let count = u64::from_le_bytes(header.try_into().expect("8 bytes"));
        if count != numel as u64 {
            return Err(CheckpointError::Malformed(format!(
                "storage {key} holds {count} elements but is declared with {numel}"
            )));
        }
        pos += 8;
        let len = numel * dtype.size();
        let data = bytes.get(pos..pos + len).ok_or_else(|| {
            CheckpointError::Truncated(format!(
                "storage {key} needs {len} bytes at offset {pos}, the file has {}",
                bytes.len()
            ))
        })?;
        out.insert(key.clone(), data);
        pos += len;
    }
    if let Some(missing) = declared.keys().find(|k| !out.contains_key(*k)) {
        return Err(CheckpointError::Malformed(format!("storage {missing} is used but not stored")));
    }
    Ok(out)
}

fn collect_tensors(
    value: &Value,
    prefix: &str,
    storages: &HashMap<String, &[u8]>,
    out: &mut Checkpoint,
) -> Result<(), CheckpointError> {
    let Value::Dict(items) = value else { return Ok(()) };
    for (key, value) in items.borrow().iter() {
        let Some(key) = key.as_str() else { continue };
        let name = if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
        match value {
            Value::Tensor(t) => match t.storage.dtype.name() {
                Some(dtype) => {
                    let data = storages[&t.storage.key];
                    let values = gather(t, data).map_err(|e| CheckpointError::Malformed(format!("tensor {name}: {e}")))?;
                    out.tensors.push((name, CheckpointTensor { shape: t.shape.clone(), dtype, values }));
                }
                None => out.skipped.push(name),
            },
            Value::Dict(_) => collect_tensors(value, &name, storages, out)?,
            _ => {}
        }
    }
    Ok(())
}

/// The tensor's elements in row-major order, following its offset and strides.
fn gather(t: &TensorRef, data: &[u8]) -> Result<Vec<f32>, String> {
    let size = t.storage.dtype.size();
    let numel = data.len() / size;
    let count = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("size overflows")?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |a, (&d, &s)| a.checked_add((d - 1).checked_mul(s)?))
        .ok_or("strides overflow")?;
    if last >= numel {
        return Err(format!("reaches element {last} of a storage of {numel}"));
    }
    let element = |i: usize| t.storage.dtype.decode(&data[i * size..(i + 1) * size]);
    let mut expected = 1;
    let contiguous = t.shape.iter().zip(&t.stride).rev().all(|(&d, &s)| {
        let ok = d == 1 || s == expected;
        expected *= d;
        ok
    });
    if contiguous {
        return Ok((t.offset..t.offset + count).map(element).collect());
    }
    let mut values = Vec::with_capacity(count);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..count {
        let at = t.offset + index.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        values.push(element(at));
        for axis in (0..index.len()).rev() {
            index[axis] += 1;
            if index[axis] < t.shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A legacy checkpoint as torch.save (protocol 2) writes it, holding an
    /// OrderedDict with one contiguous and one transposed tensor over one storage.
    fn tiny_checkpoint() -> Vec<u8> {
        let mut b = Vec::new();
        // magic number as LONG1
        b.extend([0x80, 2, 0x8a, 10]);
        b.extend(0x1950a86a20f9469cfc6c_u128.to_le_bytes()[..10].iter());
        b.push(b'.');
        b.extend([0x80, 2, b'M', 0xe9, 0x03, b'.']); // 1001
        b.extend([0x80, 2, b'}', b'.']); // sys_info {}
        // OrderedDict([['a', T(storage,0,(2,3),(3,1))], ['b', T(storage,0,(3,2),(1,3))]])
        b.extend([0x80, 2]);
        b.extend(b"ccollections\nOrderedDict\n");
        b.extend([b']', b'(']);
        for (name, shape, stride) in [(b'a', [2u8, 3], [3u8, 1]), (b'b', [3, 2], [1, 3])] {
            b.extend([b']', b'(', b'U', 1, name]);
            b.extend(b"ctorch._utils\n_rebuild_tensor\n");
            b.extend([b'(', b'(', b'U', 7]);
            b.extend(b"storage");
            b.extend(b"ctorch\nFloatStorage\n");
            b.extend([b'U', 1, b'7', b'U', 3]);
            b.extend(b"cpu");
            b.extend([b'K', 6, b'N', b't', b'Q', b'K', 0]);
            b.extend([b'K', shape[0], b'K', shape[1], 0x86, b'K', stride[0], b'K', stride[1], 0x86, b't', b'R', b'e']);
        }
        b.extend([b'e', 0x85, b'R', b'.']);
        b.extend([0x80, 2, b']', b'(', b'U', 1, b'7', b'e', b'.']);
        b.extend(6u64.to_le_bytes());
        for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0] {
            b.extend(v.to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_contiguous_and_strided_tensors() {
        let c = read_checkpoint(&tiny_checkpoint()).unwrap();
        assert_eq!(c.tensors.len(), 2);
        assert_eq!(c.tensors[0].0, "a");
        assert_eq!(c.tensors[0].1.shape, vec![2, 3]);
        assert_eq!(c.tensors[0].1.values, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(c.tensors[1].0, "b");
        assert_eq!(c.tensors[1].1.shape, vec![3, 2]);
        // b = a transposed
        assert_eq!(c.tensors[1].1.values, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = tiny_checkpoint();
        for n in 0..full.len() {
            assert!(read_checkpoint(&full[..n]).is_err(), "prefix of {n} bytes was accepted");
        }
    }

    #[test]
    fn zip_and_garbage_are_named() {
        assert!(matches!(read_checkpoint(b"PK\x03\x04rest"), Err(CheckpointError::ZipFormat)));
        assert!(matches!(read_checkpoint(b"hello"), Err(CheckpointError::NotCheckpoint(_))));
    }

    #[test]
    fn a_tensor_reaching_past_its_storage_is_refused() {
        let mut b = tiny_checkpoint();
        // Make tensor 'a' claim stride 4 on its first axis: 4 + 2 = element 6 of 6.
        let at = b.windows(4).position(|w| w == [b'K', 3, b'K', 1]).unwrap();
        b[at + 1] = 4;
        let err = read_checkpoint(&b).unwrap_err().to_string();
        assert!(err.contains("reaches element"), "{err}");
    }
}
