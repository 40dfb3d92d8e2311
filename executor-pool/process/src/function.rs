//! Registered functions: the unit of work of a process pool.
//!
//! A closure cannot cross a process boundary (its captures live in the parent's memory, its
//! code address means nothing to another process), so a process pool runs *registered
//! functions*: [`process_fn!`](crate::process_fn) turns `fn name(args) -> R { .. }` into a
//! [`ProcessFn`] constant, and puts an entry for it in [`REGISTRY`], a `linkme` distributed
//! slice the linker assembles from every crate of the binary. A worker (`worker.rs`) finds
//! a call's function there by its key: the function's path plus its signature, spelled out
//! (`my_app::thumbs::resize(Resize) -> Thumbnail`), never a code address, which shared
//! libraries and ASLR would break. The registry is complete before any code runs, so a
//! worker may read it before `main` (`entry.rs`).
//!
//! Arguments and results travel as postcard bytes (`wire.rs`); [`run_encoded`] is the
//! worker's side of that: decode the arguments, call, encode the result.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::payload::{self, Encoded, Regions};

/// A function registered with [`process_fn!`](crate::process_fn), ready to be called in a
/// worker process: [`ProcessPool::call`](crate::ProcessPool::call)`(resize, args)`.
///
/// `A` is the argument (one argument), or the arguments as a tuple (none, or several); `R`
/// the result.
pub struct ProcessFn<A, R> {
    key: &'static str,
    local: fn(A) -> R,
    _types: PhantomData<fn(A) -> R>,
}

impl<A, R> ProcessFn<A, R> {
    #[doc(hidden)]
    pub const fn new(key: &'static str, local: fn(A) -> R) -> Self {
        ProcessFn {
            key,
            local,
            _types: PhantomData,
        }
    }

    /// The key a worker finds the function by: its path and its signature.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// Runs the function here, in this process and on this thread (tests; the
    /// `CallerRuns` overflow policy).
    pub fn call_here(&self, args: A) -> R {
        (self.local)(args)
    }
}

impl<A, R> Clone for ProcessFn<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for ProcessFn<A, R> {}

impl<A, R> fmt::Debug for ProcessFn<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProcessFn").field(&self.key).finish()
    }
}

/// One registered function, as a worker sees it: its key and how to run an encoded call.
#[doc(hidden)]
#[derive(Debug)]
pub struct Entry {
    pub key: &'static str,
    pub run: fn(&mut Exchange<'_>) -> Result<(), Encoding>,
}

/// One encoded call in a worker: the arguments' bytes in, the result's out (encoded into
/// one of the worker's regions when it is large, `payload.rs`).
#[doc(hidden)]
pub struct Exchange<'a> {
    input: &'a [u8],
    regions: &'a Arc<Regions>,
    output: Option<Encoded>,
}

impl<'a> Exchange<'a> {
    pub(crate) fn new(input: &'a [u8], regions: &'a Arc<Regions>) -> Self {
        Exchange {
            input,
            regions,
            output: None,
        }
    }

    /// The encoded result, once the call returned.
    pub(crate) fn into_output(self) -> Option<Encoded> {
        self.output
    }
}

impl fmt::Debug for Exchange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("input", &self.input.len())
            .field("output", &self.output)
            .finish()
    }
}

/// Every registered function of the binary (filled by `process_fn!`, assembled by the
/// linker).
#[doc(hidden)]
#[linkme::distributed_slice]
pub static REGISTRY: [Entry];

/// Why an encoded call could not be run or answered.
#[doc(hidden)]
#[derive(Debug)]
pub enum Encoding {
    /// The arguments could not be decoded.
    Arguments(String),
    /// The result could not be encoded.
    Result(String),
}

/// Decodes `input` as `A`, calls `f`, encodes its result: the worker's side of a call.
/// A panic in `f` unwinds out of here (the worker catches it, `worker.rs`).
#[doc(hidden)]
pub fn run_encoded<A: DeserializeOwned, R: Serialize>(
    exchange: &mut Exchange<'_>,
    f: fn(A) -> R,
) -> Result<(), Encoding> {
    let args = postcard::from_bytes(exchange.input)
        .map_err(|e| Encoding::Arguments(format!("the worker cannot decode them: {e}")))?;
    let result = f(args);
    let output = payload::encode(&result, exchange.regions).map_err(|e| {
        let why = encoding_error(&result, e);
        Encoding::Result(format!("the worker cannot encode it: {why}"))
    })?;
    exchange.output = Some(output);
    Ok(())
}

/// What went wrong encoding `value`. postcard keeps no text for a type's own error
/// (`serde::ser::Error::custom`), which is what the user needs to fix it: that one is
/// found again by encoding the value with a format that keeps it (into nothing).
pub(crate) fn encoding_error<T: Serialize>(value: &T, error: postcard::Error) -> String {
    if matches!(error, postcard::Error::SerdeSerCustom)
        && let Err(own) = serde_json::to_writer(std::io::sink(), value)
    {
        return own.to_string();
    }
    error.to_string()
}

/// The registered function with this key, if the binary has one.
pub(crate) fn find(key: &str) -> Option<&'static Entry> {
    static BY_KEY: OnceLock<HashMap<&'static str, &'static Entry>> = OnceLock::new();
    BY_KEY
        .get_or_init(|| REGISTRY.iter().map(|entry| (entry.key, entry)).collect())
        .get(key)
        .copied()
}

/// Registers a function for process pools and names it as a [`ProcessFn`] constant.
///
/// The body is an ordinary function body; its arguments and result must be
/// `serde::Serialize + serde::de::DeserializeOwned` (they cross a process boundary).
/// Arguments are plain names (`fn f(data: Vec<u8>)`; rebind with `let mut` inside).
///
/// # Examples
///
/// ```
/// oneloop_process::process_fn! {
///     /// Sums a vector (in a worker process).
///     pub fn sum(values: Vec<u64>) -> u64 {
///         values.iter().sum()
///     }
/// }
///
/// assert_eq!(sum.call_here(vec![1, 2, 3]), 6);
/// assert!(sum.key().ends_with("::sum(Vec<u64>) -> u64"));
/// ```
#[macro_export]
macro_rules! process_fn {
    // No return type: it returns `()`.
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($params:tt)*) $body:block) => {
        $crate::process_fn!($(#[$meta])* $vis fn $name($($params)*) -> () $body);
    };
    // One argument: the function's argument type is the call's (`call(f, arg)`).
    ($(#[$meta:meta])* $vis:vis fn $name:ident($arg:ident : $ty:ty $(,)?) -> $ret:ty $body:block) => {
        $crate::__process_fn!(
            [$(#[$meta])*] $vis $name [$ty] [$arg: $ty] [$ty] $ret $body
        );
    };
    // None, or several: a tuple of them (`call(f, ())`, `call(f, (a, b))`).
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $crate::__process_fn!(
            [$(#[$meta])*] $vis $name [($($ty,)*)] [($($arg,)*): ($($ty,)*)] [$($ty),*] $ret $body
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __process_fn {
    ([$($meta:tt)*] $vis:vis $name:ident [$args:ty] [$($params:tt)*] [$($sig:tt)*] $ret:ty $body:block) => {
        $($meta)*
        #[allow(non_upper_case_globals)]
        $vis const $name: $crate::ProcessFn<$args, $ret> = {
            fn local($($params)*) -> $ret $body

            fn encoded(
                exchange: &mut $crate::__private::Exchange<'_>,
            ) -> ::core::result::Result<(), $crate::__private::Encoding> {
                $crate::__private::run_encoded(exchange, local)
            }

            const KEY: &str = ::core::concat!(
                ::core::module_path!(), "::", ::core::stringify!($name),
                "(", ::core::stringify!($($sig)*), ") -> ", ::core::stringify!($ret)
            );

            #[$crate::__private::linkme::distributed_slice($crate::__private::REGISTRY)]
            #[linkme(crate = $crate::__private::linkme)]
            static ENTRY: $crate::__private::Entry = $crate::__private::Entry {
                key: KEY,
                run: encoded,
            };

            $crate::ProcessFn::new(KEY, local)
        };
    };
}
