//! A small pickle virtual machine: the part of Python's pickle protocols 2 to 5 that `torch.save`
//! writes. Nothing is ever imported or executed: the globals a format needs are interpreted by
//! its [`Hooks`], which build values of their own type (`X`, e.g. PyTorch's storages and
//! tensors), and every other object becomes an opaque [`Value::Object`] that can be described and
//! left out. The machine knows nothing of any format.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// A Python object rebuilt from a pickle. Containers are shared (`Rc`) because the memo hands
/// the same object out again, and mutable (`RefCell`) because a pickle fills a list or dict after
/// memoizing it. `X` is what the hooks build.
#[derive(Clone)]
pub(crate) enum Value<X> {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Items<X>>),
    List(Rc<RefCell<Items<X>>>),
    Dict(Rc<RefCell<Entries<X>>>),
    Global(Rc<Global>),
    /// An object of a class this reader does not model, named by its class.
    Object(Rc<str>),
    /// An object the hooks built.
    Extension(X),
}

/// What hooks build: it only needs to describe itself in messages.
pub(crate) trait Extension: Clone {
    fn describe(&self) -> String;
}

/// The elements of a tuple or list.
pub(crate) struct Items<X>(pub(crate) Vec<Value<X>>);

/// The entries of a dict, in insertion order.
pub(crate) struct Entries<X>(pub(crate) Vec<(Value<X>, Value<X>)>);

/// A class or function named by a GLOBAL opcode.
pub(crate) struct Global {
    pub(crate) module: String,
    pub(crate) name: String,
}

impl fmt::Display for Global {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// What the machine cannot know by itself: how to load persistent ids and call globals.
pub(crate) trait Hooks {
    type Extension: Extension;
    /// The object a BINPERSID id stands for.
    fn persistent_load(
        &mut self,
        pid: Value<Self::Extension>,
    ) -> Result<Value<Self::Extension>, String>;
    /// The result of calling `global` with `args` (REDUCE, NEWOBJ), or `None` for a global the
    /// hooks do not know, which then becomes an opaque object. A list or dict returned must be
    /// new, not nested in another value: the machine registers it (see [`Loaded`]).
    fn call(
        &mut self,
        global: &Global,
        args: &[Value<Self::Extension>],
    ) -> Result<Option<Value<Self::Extension>>, String>;
}

impl<X: Extension> Value<X> {
    fn tuple(items: Vec<Value<X>>) -> Self {
        Value::Tuple(Rc::new(Items(items)))
    }

    pub(crate) fn dict(entries: Vec<(Value<X>, Value<X>)>) -> Self {
        Value::Dict(Rc::new(RefCell::new(Entries(entries))))
    }

    fn empty_list() -> Self {
        Value::List(Rc::new(RefCell::new(Items(Vec::new()))))
    }

    /// A short description for messages, e.g. "int 91" or "dict with 3 entries".
    pub(crate) fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => format!("bool {}", if *b { "True" } else { "False" }),
            Value::Int(i) => format!("int {i}"),
            Value::Float(x) => format!("float {x}"),
            Value::Str(s) if s.chars().count() > 40 => {
                format!("str '{}...'", s.chars().take(40).collect::<String>())
            }
            Value::Str(s) => format!("str '{s}'"),
            Value::Bytes(b) => format!("bytes of length {}", b.len()),
            Value::Tuple(t) => format!("tuple of {}", count(t.0.len(), "item")),
            Value::List(l) => format!("list of {}", count(l.borrow().0.len(), "item")),
            Value::Dict(d) => format!("dict with {}", count(d.borrow().0.len(), "entry")),
            Value::Global(g) => format!("global {g}"),
            Value::Object(class) => format!("{class} object"),
            Value::Extension(x) => x.describe(),
        }
    }
}

fn count(n: usize, noun: &str) -> String {
    match (n, noun) {
        (1, _) => format!("1 {noun}"),
        (_, "entry") => format!("{n} entries"),
        _ => format!("{n} {noun}s"),
    }
}

// A pickle can nest containers arbitrarily deep (one byte per level with TUPLE1), and the
// default recursive drop would overflow the stack on such input. Containers therefore hand their
// elements to a loop that takes apart every container it owns the last reference to.
impl<X> Drop for Items<X> {
    fn drop(&mut self) {
        drop_iteratively(std::mem::take(&mut self.0));
    }
}

impl<X> Drop for Entries<X> {
    fn drop(&mut self) {
        let pending = std::mem::take(&mut self.0)
            .into_iter()
            .flat_map(|(k, v)| [k, v])
            .collect();
        drop_iteratively(pending);
    }
}

fn drop_iteratively<X>(mut pending: Vec<Value<X>>) {
    while let Some(value) = pending.pop() {
        match value {
            Value::Tuple(t) => {
                if let Some(mut items) = Rc::into_inner(t) {
                    pending.append(&mut items.0);
                }
            }
            Value::List(l) => {
                if let Some(items) = Rc::into_inner(l) {
                    pending.append(&mut items.into_inner().0);
                }
            }
            Value::Dict(d) => {
                if let Some(entries) = Rc::into_inner(d) {
                    for (k, v) in entries.into_inner().0.drain(..) {
                        pending.push(k);
                        pending.push(v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Defines the opcode constants and their names (all of pickle's opcodes, so that an
/// unsupported one is named in the error).
macro_rules! opcodes {
    ($($name:ident = $byte:expr),* $(,)?) => {
        $(const $name: u8 = $byte;)*
        fn opcode_name(op: u8) -> Option<&'static str> {
            match op {
                $($name => Some(stringify!($name)),)*
                _ => None,
            }
        }
    };
}

opcodes! {
    MARK = b'(', STOP = b'.', POP = b'0', POP_MARK = b'1', DUP = b'2', FLOAT = b'F',
    INT = b'I', BININT = b'J', BININT1 = b'K', LONG = b'L', BININT2 = b'M', NONE = b'N',
    PERSID = b'P', BINPERSID = b'Q', REDUCE = b'R', STRING = b'S', BINSTRING = b'T',
    SHORT_BINSTRING = b'U', UNICODE = b'V', BINUNICODE = b'X', APPEND = b'a', BUILD = b'b',
    GLOBAL = b'c', DICT = b'd', EMPTY_DICT = b'}', APPENDS = b'e', GET = b'g', BINGET = b'h',
    INST = b'i', LONG_BINGET = b'j', LIST = b'l', EMPTY_LIST = b']', OBJ = b'o', PUT = b'p',
    BINPUT = b'q', LONG_BINPUT = b'r', SETITEM = b's', TUPLE = b't', EMPTY_TUPLE = b')',
    SETITEMS = b'u', BINFLOAT = b'G', PROTO = 0x80, NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83,
    EXT4 = 0x84, TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89,
    LONG1 = 0x8a, LONG4 = 0x8b, BINBYTES = b'B', SHORT_BINBYTES = b'C',
    SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e, EMPTY_SET = 0x8f,
    ADDITEMS = 0x90, FROZENSET = 0x91, NEWOBJ_EX = 0x92, STACK_GLOBAL = 0x93, MEMOIZE = 0x94,
    FRAME = 0x95, BYTEARRAY8 = 0x96, NEXT_BUFFER = 0x97, READONLY_BUFFER = 0x98,
}

/// The object a pickle rebuilt, with every list and dict made on the way.
///
/// A pickle can make a container hold itself (a list appended to itself through the memo), and
/// reference counting alone would never free such a cycle: a reader fed strangers' files would
/// leak with every one. Dropping a `Loaded` empties every container it made, which breaks every
/// cycle (a cycle must pass through a list or dict: a tuple is complete before it exists).
/// Values cloned out of it must therefore not be used once it is gone.
pub(crate) struct Loaded<X> {
    pub(crate) value: Value<X>,
    containers: Vec<Value<X>>,
}

impl<X> Drop for Loaded<X> {
    fn drop(&mut self) {
        // The registry keeps every container alive while they are emptied, so taking the
        // contents apart never recurses into another container.
        let mut contents = Vec::new();
        for container in &self.containers {
            match container {
                Value::List(l) => contents.append(&mut std::mem::take(&mut l.borrow_mut().0)),
                Value::Dict(d) => {
                    for (k, v) in std::mem::take(&mut d.borrow_mut().0) {
                        contents.push(k);
                        contents.push(v);
                    }
                }
                _ => {}
            }
        }
        drop(contents);
    }
}

/// Runs the pickle at the start of `data` up to its STOP opcode. Returns the object and the
/// number of bytes the pickle took. `origin` is where `data` starts in its file, so that errors
/// give file offsets.
pub(crate) fn load<H: Hooks>(
    data: &[u8],
    origin: usize,
    hooks: &mut H,
) -> Result<(Loaded<H::Extension>, usize), String> {
    let mut machine = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        containers: Vec::new(),
        hooks,
    };
    let result = loop {
        let at = machine.pos;
        let Some(&op) = data.get(at) else {
            break Err(format!(
                "truncated file: the pickle ends at byte {} without its STOP opcode",
                origin + at
            ));
        };
        machine.pos += 1;
        match machine.step(op) {
            Ok(Some(value)) => break Ok(value),
            Ok(None) => {}
            Err(e) => {
                let name = opcode_name(op).map_or_else(|| format!("0x{op:02x}"), String::from);
                break Err(format!("pickle opcode {name} at byte {}: {e}", origin + at));
            }
        }
    };
    let loaded = Loaded {
        value: result.as_ref().map_or(Value::None, Value::clone),
        containers: std::mem::take(&mut machine.containers),
    };
    // On error too, `loaded` is dropped here and takes apart what was built.
    result.map(|_| (loaded, machine.pos))
}

struct Machine<'a, H: Hooks> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value<H::Extension>>,
    /// The stacks below each MARK.
    marks: Vec<Vec<Value<H::Extension>>>,
    memo: HashMap<u32, Value<H::Extension>>,
    /// Every list and dict made, for [`Loaded`].
    containers: Vec<Value<H::Extension>>,
    hooks: &'a mut H,
}

impl<'a, H: Hooks> Machine<'a, H> {
    /// Executes one opcode; returns the pickled object at STOP.
    fn step(&mut self, op: u8) -> Result<Option<Value<H::Extension>>, String> {
        let value = match op {
            PROTO => {
                self.take(1)?;
                return Ok(None);
            }
            FRAME => {
                self.take(8)?;
                return Ok(None);
            }
            MARK => {
                let below = std::mem::take(&mut self.stack);
                self.marks.push(below);
                return Ok(None);
            }
            STOP => return self.pop().map(Some),
            // Python's pickler writes POP and POP_MARK for tuples that contain themselves.
            POP => {
                if self.stack.pop().is_none() {
                    self.pop_mark()?;
                }
                return Ok(None);
            }
            POP_MARK => {
                self.pop_mark()?;
                return Ok(None);
            }
            DUP => self.stack.last().ok_or("the stack is empty")?.clone(),
            // Sets (protocol 4 on, e.g. in a training checkpoint's hyperparameters) hold nothing a
            // checkpoint reader uses: they stay opaque, their items dropped.
            EMPTY_SET => Value::Object("set".into()),
            ADDITEMS => {
                self.pop_mark()?;
                return match self.stack.last().ok_or("the stack is empty")? {
                    Value::Object(_) => Ok(None),
                    other => Err(format!("cannot add items to a {}", other.describe())),
                };
            }
            FROZENSET => {
                self.pop_mark()?;
                Value::Object("frozenset".into())
            }
            EMPTY_DICT => self.register(Value::dict(Vec::new())),
            EMPTY_LIST => self.register(Value::empty_list()),
            EMPTY_TUPLE => Value::tuple(Vec::new()),
            TUPLE => Value::tuple(self.pop_mark()?),
            TUPLE1 | TUPLE2 | TUPLE3 => Value::tuple(self.pop_n(usize::from(op - TUPLE1) + 1)?),
            SETITEM | SETITEMS => {
                let items = if op == SETITEM {
                    self.pop_n(2)?
                } else {
                    self.pop_mark()?
                };
                return self.set_items(items).map(|()| None);
            }
            APPEND | APPENDS => {
                let items = if op == APPEND {
                    self.pop_n(1)?
                } else {
                    self.pop_mark()?
                };
                return self.append(items).map(|()| None);
            }
            BINPUT | LONG_BINPUT | MEMOIZE => {
                let index = match op {
                    BINPUT => u32::from(self.u8()?),
                    LONG_BINPUT => u32::from_le_bytes(self.array()?),
                    _ => u32::try_from(self.memo.len()).map_err(|_| "the memo is full")?,
                };
                let top = self.stack.last().ok_or("the stack is empty")?.clone();
                self.memo.insert(index, top);
                return Ok(None);
            }
            BINGET | LONG_BINGET => {
                let index = if op == BINGET {
                    u32::from(self.u8()?)
                } else {
                    u32::from_le_bytes(self.array()?)
                };
                self.memo
                    .get(&index)
                    .ok_or_else(|| format!("memo entry {index} was never stored"))?
                    .clone()
            }
            BININT => Value::Int(i32::from_le_bytes(self.array()?).into()),
            BININT1 => Value::Int(self.u8()?.into()),
            BININT2 => Value::Int(u16::from_le_bytes(self.array()?).into()),
            LONG1 | LONG4 => {
                let len = if op == LONG1 {
                    usize::from(self.u8()?)
                } else {
                    self.len_i32()?
                };
                decode_long(self.take(len)?)
            }
            BINFLOAT => Value::Float(f64::from_be_bytes(self.array()?)),
            NONE => Value::None,
            NEWTRUE => Value::Bool(true),
            NEWFALSE => Value::Bool(false),
            SHORT_BINUNICODE | SHORT_BINSTRING => {
                let len = self.u8()?.into();
                self.string(len)?
            }
            BINUNICODE => {
                let len = u32::from_le_bytes(self.array()?);
                self.string(usize::try_from(len).map_err(|_| "string too long")?)?
            }
            BINSTRING => {
                let len = self.len_i32()?;
                self.string(len)?
            }
            BINUNICODE8 => {
                let len = self.len_u64()?;
                self.string(len)?
            }
            SHORT_BINBYTES | BINBYTES | BINBYTES8 => {
                let len = match op {
                    SHORT_BINBYTES => self.u8()?.into(),
                    BINBYTES => usize::try_from(u32::from_le_bytes(self.array()?))
                        .map_err(|_| "bytes too long")?,
                    _ => self.len_u64()?,
                };
                Value::Bytes(Rc::from(self.take(len)?))
            }
            GLOBAL => {
                let module = self.line()?;
                let name = self.line()?;
                Value::Global(Rc::new(Global { module, name }))
            }
            STACK_GLOBAL => {
                let name = self.pop_str()?;
                let module = self.pop_str()?;
                Value::Global(Rc::new(Global { module, name }))
            }
            REDUCE | NEWOBJ => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.call(callable, args)?
            }
            BUILD => {
                // The state sets attributes (e.g. a state dict's `_metadata`), which this reader
                // has no use for.
                self.pop()?;
                if self.stack.is_empty() {
                    return Err("the stack is empty".into());
                }
                return Ok(None);
            }
            BINPERSID => {
                let pid = self.pop()?;
                self.hooks.persistent_load(pid)?
            }
            _ if opcode_name(op).is_none() => {
                return Err("not a pickle opcode (corrupt file?)".into())
            }
            _ => return Err("an opcode this reader does not support".into()),
        };
        self.stack.push(value);
        Ok(None)
    }

    /// Records a new list or dict for [`Loaded`]; other values pass through.
    fn register(&mut self, value: Value<H::Extension>) -> Value<H::Extension> {
        if matches!(value, Value::List(_) | Value::Dict(_)) {
            self.containers.push(value.clone());
        }
        value
    }

    fn call(
        &mut self,
        callable: Value<H::Extension>,
        args: Value<H::Extension>,
    ) -> Result<Value<H::Extension>, String> {
        let Value::Tuple(args) = args else {
            return Err(format!(
                "the arguments are a {}, not a tuple",
                args.describe()
            ));
        };
        let Value::Global(global) = callable else {
            return Ok(Value::Object(
                format!("result of calling {}", callable.describe()).into(),
            ));
        };
        if let Some(value) = self.hooks.call(&global, &args.0)? {
            return Ok(self.register(value));
        }
        // Protocol 2 pickles some classes as `copyreg._reconstructor(cls, base, state)`:
        // the class is the interesting name.
        let class = match (global.to_string().as_str(), args.0.first()) {
            ("copyreg._reconstructor", Some(Value::Global(class))) => class.to_string(),
            (name, _) => name.to_string(),
        };
        Ok(Value::Object(class.into()))
    }

    fn set_items(&mut self, items: Vec<Value<H::Extension>>) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err("an odd number of items for key-value pairs".into());
        }
        match self.stack.last().ok_or("the stack is empty")? {
            Value::Dict(dict) => {
                let mut items = items.into_iter();
                let mut dict = dict.borrow_mut();
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    dict.0.push((k, v));
                }
                Ok(())
            }
            // Items of a dict subclass this reader does not model: not needed.
            Value::Object(_) => Ok(()),
            other => Err(format!("cannot set items on a {}", other.describe())),
        }
    }

    fn append(&mut self, mut items: Vec<Value<H::Extension>>) -> Result<(), String> {
        match self.stack.last().ok_or("the stack is empty")? {
            Value::List(list) => {
                list.borrow_mut().0.append(&mut items);
                Ok(())
            }
            // Items of a list subclass this reader does not model: not needed.
            Value::Object(_) => Ok(()),
            other => Err(format!("cannot append to a {}", other.describe())),
        }
    }

    fn pop(&mut self) -> Result<Value<H::Extension>, String> {
        self.stack.pop().ok_or_else(|| "the stack is empty".into())
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value<H::Extension>>, String> {
        let at = self
            .stack
            .len()
            .checked_sub(n)
            .ok_or_else(|| format!("needs {n} values but the stack holds fewer"))?;
        Ok(self.stack.split_off(at))
    }

    /// The values above the last MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value<H::Extension>>, String> {
        let below = self.marks.pop().ok_or("no MARK before it")?;
        Ok(std::mem::replace(&mut self.stack, below))
    }

    fn pop_str(&mut self) -> Result<String, String> {
        match self.pop()? {
            Value::Str(s) => Ok(s.to_string()),
            other => Err(format!("expects strings, found a {}", other.describe())),
        }
    }

    /// The next `n` bytes of the opcode's argument.
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let start = self.pos;
        let bytes = start
            .checked_add(n)
            .and_then(|end| self.data.get(start..end))
            .ok_or("truncated file: the data ends inside the opcode's argument")?;
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    fn len_i32(&mut self) -> Result<usize, String> {
        let len = i32::from_le_bytes(self.array()?);
        usize::try_from(len).map_err(|_| format!("negative length {len}"))
    }

    fn len_u64(&mut self) -> Result<usize, String> {
        let len = u64::from_le_bytes(self.array()?);
        usize::try_from(len).map_err(|_| format!("length {len} too large"))
    }

    fn string(&mut self, len: usize) -> Result<Value<H::Extension>, String> {
        let text = std::str::from_utf8(self.take(len)?)
            .map_err(|e| format!("the string is not UTF-8: {e}"))?;
        Ok(Value::Str(text.into()))
    }

    /// A newline-terminated argument (GLOBAL's module and name).
    fn line(&mut self) -> Result<String, String> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("truncated file: the data ends inside the opcode's argument")?;
        let line = std::str::from_utf8(self.take(len)?)
            .map_err(|e| format!("the name is not UTF-8: {e}"))?
            .to_string();
        self.take(1)?;
        Ok(line)
    }
}

/// A LONG1/LONG4 integer: little-endian two's complement. Wider than 128 bits, which no
/// checkpoint needs, it becomes an opaque object.
fn decode_long<X>(bytes: &[u8]) -> Value<X> {
    if bytes.len() > 16 {
        return Value::Object(format!("int of {} bytes", bytes.len()).into());
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut wide = [if negative { 0xff } else { 0 }; 16];
    wide[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i128::from_le_bytes(wide))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Nothing;

    impl Extension for Nothing {
        fn describe(&self) -> String {
            "nothing".into()
        }
    }

    struct NoHooks;

    impl Hooks for NoHooks {
        type Extension = Nothing;
        fn persistent_load(&mut self, _: Value<Nothing>) -> Result<Value<Nothing>, String> {
            Err("no persistent ids".into())
        }
        fn call(
            &mut self,
            _: &Global,
            _: &[Value<Nothing>],
        ) -> Result<Option<Value<Nothing>>, String> {
            Ok(None)
        }
    }

    fn run(pickle: &[u8]) -> Result<Loaded<Nothing>, String> {
        load(pickle, 0, &mut NoHooks).map(|(loaded, _)| loaded)
    }

    #[test]
    fn containers_holding_themselves_are_freed() {
        // l = []; l.append(l); d = {}; d['d'] = d; (l, d), through the memo as pickle writes it.
        let pickle = b"\x80\x02]q\x00h\x00a}q\x01X\x01\x00\x00\x00dh\x01s\x86.";
        let loaded = run(pickle).unwrap();
        let Value::Tuple(pair) = &loaded.value else {
            panic!("not a tuple: {}", loaded.value.describe());
        };
        let (Value::List(list), Value::Dict(dict)) = (&pair.0[0], &pair.0[1]) else {
            panic!("not a list and a dict");
        };
        assert!(matches!(&list.borrow().0[0], Value::List(inner) if Rc::ptr_eq(inner, list)));
        let (list, dict) = (Rc::downgrade(list), Rc::downgrade(dict));
        drop(loaded);
        assert!(
            list.upgrade().is_none() && dict.upgrade().is_none(),
            "a cycle leaked"
        );
    }

    #[test]
    fn a_failed_pickle_frees_its_cycles_too() {
        let kept = std::cell::RefCell::new(None);
        struct Keep<'a>(&'a std::cell::RefCell<Option<std::rc::Weak<RefCell<Items<Nothing>>>>>);
        impl Hooks for Keep<'_> {
            type Extension = Nothing;
            fn persistent_load(&mut self, pid: Value<Nothing>) -> Result<Value<Nothing>, String> {
                if let Value::List(l) = &pid {
                    *self.0.borrow_mut() = Some(Rc::downgrade(l));
                }
                Err("stop here".into())
            }
            fn call(
                &mut self,
                _: &Global,
                _: &[Value<Nothing>],
            ) -> Result<Option<Value<Nothing>>, String> {
                Ok(None)
            }
        }
        // l = []; l.append(l); then BINPERSID on it fails.
        let e = load(b"\x80\x02]q\x00h\x00ah\x00Q.", 0, &mut Keep(&kept))
            .err()
            .unwrap();
        assert!(e.contains("BINPERSID") && e.contains("stop here"), "{e}");
        let weak = kept.borrow_mut().take().expect("the hook saw the list");
        assert!(weak.upgrade().is_none(), "a cycle leaked");
    }

    #[test]
    fn pop_pop_mark_and_dup() {
        // (1, 2) built, duplicated, popped; a MARK with an int above it dropped by POP_MARK;
        // POP on an empty stack removes the last MARK.
        let loaded = run(b"\x80\x02K\x01K\x02\x862\x30(K\x091(0.").unwrap();
        assert_eq!(loaded.value.describe(), "tuple of 2 items");
        assert!(run(b"\x80\x020.").err().unwrap().contains("no MARK"));
    }
}
