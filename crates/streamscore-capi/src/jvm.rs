//! The JVM binding's native half (Cargo feature `jni`): the static native methods of
//! `io.streamscore.Native` (crates/streamscore-capi/java), each a thin call of the C ABI.
//!
//! Going through the C functions keeps one set of checks and one handle table for both: a
//! Java handle is the C handle's number, so a `Model` used after `close` is the same
//! `SS_STATUS_INVALID_HANDLE`, raised as `InvalidHandleException`. A failed status becomes the
//! exception class of its kind (declared beside `Native`, on the loader the native library was
//! loaded by, so every class loader that shares `Native` sees the same classes), with
//! `ss_last_error`'s message. Arrays are read in place (`GetPrimitiveArrayCritical`) where the
//! call does not block; direct `FloatBuffer`s are used at their address, without a copy.

use std::ffi::{CStr, CString};

use jni::JNIEnv;
use jni::objects::{JByteArray, JByteBuffer, JClass, JFloatArray, JObject, JObjectArray, JString};
use jni::sys::{jboolean, jint, jintArray, jlong, jstring};

use crate::*;

/// The Java exception class of a status.
fn class_of(status: SsStatus) -> &'static str {
    match status {
        SsStatus::Model | SsStatus::Io => "io/streamscore/ModelException",
        SsStatus::Width => "io/streamscore/WidthException",
        SsStatus::NullPointer => "java/lang/NullPointerException",
        SsStatus::Input | SsStatus::InvalidArgument | SsStatus::BufferTooSmall => {
            "io/streamscore/InputException"
        }
        SsStatus::QueueFull => "io/streamscore/QueueFullException",
        SsStatus::Closed => "io/streamscore/ClosedException",
        SsStatus::Expired | SsStatus::Shed => "io/streamscore/ExpiredException",
        SsStatus::Unavailable => "io/streamscore/UnavailableException",
        SsStatus::Config => "io/streamscore/ConfigException",
        SsStatus::InvalidHandle => "io/streamscore/InvalidHandleException",
        _ => "io/streamscore/StreamscoreException",
    }
}

/// Raises the exception of a failed status; true when the call succeeded.
fn ok(env: &mut JNIEnv, status: SsStatus) -> bool {
    if status == SsStatus::Ok {
        return true;
    }
    // SAFETY: ss_last_error never returns null and its text lives until this thread's next
    // failing call.
    let message = unsafe { CStr::from_ptr(ss_last_error()) }.to_string_lossy().into_owned();
    raise(env, class_of(status), &message);
    false
}

fn raise(env: &mut JNIEnv, class: &str, message: &str) {
    // Throwing fails only when the JVM cannot make the exception (out of memory), and then an
    // exception (OutOfMemoryError) is pending already.
    let _ = env.throw_new(class, message);
}

/// A Java string as a C string; null stays null (`None`). Raises and returns `Err` on failure.
fn c_string(env: &mut JNIEnv, s: &JString) -> Result<Option<CString>, ()> {
    if s.is_null() {
        return Ok(None);
    }
    let text: String = match env.get_string(s) {
        Ok(t) => t.into(),
        Err(_) => return Err(()), // an exception is pending
    };
    match CString::new(text) {
        Ok(c) => Ok(Some(c)),
        Err(_) => {
            raise(env, "io/streamscore/InputException", "a string with a NUL character");
            Err(())
        }
    }
}

fn ptr(s: &Option<CString>) -> *const std::ffi::c_char {
    s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

fn handle(env: &mut JNIEnv, s: SsStatus, id: u64) -> jlong {
    if ok(env, s) { id as jlong } else { 0 }
}

#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_version<'l>(
    env: JNIEnv<'l>,
    _: JClass<'l>,
) -> jstring {
    // SAFETY: ss_version is a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(ss_version()) }.to_string_lossy();
    env.new_string(v).map_or(std::ptr::null_mut(), |s| s.into_raw())
}

#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_modelLoad<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    path: JString<'l>,
    backend: JString<'l>,
) -> jlong {
    let (Ok(path), Ok(backend)) = (c_string(&mut env, &path), c_string(&mut env, &backend)) else {
        return 0;
    };
    let mut m = SsModel { id: 0 };
    // SAFETY: NUL-terminated strings (or null) and a writable out-pointer.
    let s = unsafe { ss_model_load(ptr(&path), ptr(&backend), &mut m) };
    handle(&mut env, s, m.id)
}

#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_modelLoadBytes<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    data: JByteArray<'l>,
    backend: JString<'l>,
) -> jlong {
    let Ok(backend) = c_string(&mut env, &backend) else { return 0 };
    let Ok(bytes) = env.convert_byte_array(&data) else { return 0 };
    let mut m = SsModel { id: 0 };
    // SAFETY: `bytes` holds its length; strings as above.
    let s = unsafe { ss_model_load_bytes(bytes.as_ptr(), bytes.len(), ptr(&backend), &mut m) };
    handle(&mut env, s, m.id)
}

#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_modelFree<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) {
    ok(&mut env, ss_model_free(SsModel { id: h as u64 }));
}

/// `{n_features, transformed width, raw width}`.
#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_modelShape<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) -> jintArray {
    let m = SsModel { id: h as u64 };
    let (mut n, mut k, mut raw) = (0usize, 0usize, 0usize);
    // SAFETY: writable out-pointers.
    let s = unsafe { ss_model_n_features(m, &mut n) };
    if !ok(&mut env, s) {
        return std::ptr::null_mut();
    }
    // SAFETY: as above.
    let s = unsafe { ss_model_output_width(m, SS_OUTPUT_TRANSFORMED, &mut k) };
    if !ok(&mut env, s) {
        return std::ptr::null_mut();
    }
    // SAFETY: as above.
    let s = unsafe { ss_model_output_width(m, SS_OUTPUT_RAW, &mut raw) };
    if !ok(&mut env, s) {
        return std::ptr::null_mut();
    }
    ints(&mut env, &[n, k, raw])
}

fn ints(env: &mut JNIEnv, values: &[usize]) -> jintArray {
    let v: Vec<jint> = values.iter().map(|&x| x.min(jint::MAX as usize) as jint).collect();
    let Ok(a) = env.new_int_array(v.len() as jint) else { return std::ptr::null_mut() };
    if env.set_int_array_region(&a, 0, &v).is_err() {
        return std::ptr::null_mut();
    }
    a.into_raw()
}

fn flags(column_major: jboolean, raw: jboolean) -> (u32, u32) {
    let layout = if column_major != 0 { SS_COLUMN_MAJOR } else { SS_ROW_MAJOR };
    let output = if raw != 0 { SS_OUTPUT_RAW } else { SS_OUTPUT_TRANSFORMED };
    (layout, output)
}

fn count(env: &mut JNIEnv, n: jint, what: &str) -> Option<usize> {
    if n < 0 {
        raise(env, "io/streamscore/InputException", &format!("{what} = {n} is negative"));
        None
    } else {
        Some(n as usize)
    }
}

/// Scores `x` (a `float[]`) into `out` (a `float[]`), both read and written in place.
#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_modelScore<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    x: JFloatArray<'l>,
    n_rows: jint,
    n_cols: jint,
    column_major: jboolean,
    raw: jboolean,
    out: JFloatArray<'l>,
) {
    let (Some(rows), Some(cols)) =
        (count(&mut env, n_rows, "nRows"), count(&mut env, n_cols, "nCols"))
    else {
        return;
    };
    if x.is_null() || out.is_null() {
        raise(&mut env, "java/lang/NullPointerException", "rows and out must not be null");
        return;
    }
    let (Ok(x_len), Ok(out_len)) = (env.get_array_length(&x), env.get_array_length(&out)) else {
        return;
    };
    if (x_len as usize) < rows.saturating_mul(cols) {
        let m = format!("{x_len} values for {rows} rows x {cols} features");
        raise(&mut env, "io/streamscore/InputException", &m);
        return;
    }
    let (layout, output) = flags(column_major, raw);
    let raw_env = env.get_raw();
    // Both arrays are pinned with the raw JNI calls: nothing else (not even a length query,
    // which the jni crate's guard makes) may be called while a critical region is open.
    // SAFETY: distinct live arrays of this call; the regions are released below on every path,
    // and the scoring between makes no JNI call and does not block.
    let status = unsafe {
        let get = (**raw_env).GetPrimitiveArrayCritical.expect("JNI 1.2");
        let release = (**raw_env).ReleasePrimitiveArrayCritical.expect("JNI 1.2");
        let xs = get(raw_env, x.as_raw(), std::ptr::null_mut());
        if xs.is_null() {
            return; // OutOfMemoryError is pending
        }
        let os = get(raw_env, out.as_raw(), std::ptr::null_mut());
        if os.is_null() {
            release(raw_env, x.as_raw(), xs, jni::sys::JNI_ABORT);
            return;
        }
        let s = ss_model_score(
            SsModel { id: h as u64 },
            xs.cast::<f32>(),
            rows,
            cols,
            layout,
            output,
            os.cast::<f32>(),
            out_len as usize,
        );
        release(raw_env, out.as_raw(), os, 0);
        release(raw_env, x.as_raw(), xs, jni::sys::JNI_ABORT);
        s
    };
    ok(&mut env, status);
}

/// Scores a direct `FloatBuffer` into another, at their addresses (no copy).
#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_modelScoreDirect<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    x: JObject<'l>,
    n_rows: jint,
    n_cols: jint,
    column_major: jboolean,
    raw: jboolean,
    out: JObject<'l>,
) {
    let (Some(rows), Some(cols)) =
        (count(&mut env, n_rows, "nRows"), count(&mut env, n_cols, "nCols"))
    else {
        return;
    };
    let (x, out) = (JByteBuffer::from(x), JByteBuffer::from(out));
    let (Ok(xp), Ok(x_cap), Ok(op), Ok(out_cap)) = (
        env.get_direct_buffer_address(&x),
        env.get_direct_buffer_capacity(&x),
        env.get_direct_buffer_address(&out),
        env.get_direct_buffer_capacity(&out),
    ) else {
        raise(&mut env, "io/streamscore/InputException", "rows and out must be direct buffers");
        return;
    };
    // For a FloatBuffer the JVM reports its capacity in floats.
    if x_cap < rows.saturating_mul(cols) {
        let m = format!("{x_cap} values for {rows} rows x {cols} features");
        raise(&mut env, "io/streamscore/InputException", &m);
        return;
    }
    let (layout, output) = flags(column_major, raw);
    // SAFETY: direct buffers of x_cap and out_cap floats (the Java side checked they are
    // FloatBuffers in native order), alive while the caller holds them.
    let status = unsafe {
        ss_model_score(
            SsModel { id: h as u64 },
            xp.cast::<f32>(),
            rows,
            cols,
            layout,
            output,
            op.cast::<f32>(),
            out_cap,
        )
    };
    ok(&mut env, status);
}

#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_runtimeNew<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    model: JString<'l>,
    keys: JObjectArray<'l>,
    values: JObjectArray<'l>,
) -> jlong {
    let Ok(model) = c_string(&mut env, &model) else { return 0 };
    let mut strings = Vec::new();
    for array in [&keys, &values] {
        let Ok(n) = env.get_array_length(array) else { return 0 };
        let mut v = Vec::with_capacity(n as usize);
        for i in 0..n {
            let Ok(o) = env.get_object_array_element(array, i) else { return 0 };
            let Ok(Some(c)) = c_string(&mut env, &JString::from(o)) else {
                if !env.exception_check().unwrap_or(true) {
                    raise(&mut env, "java/lang/NullPointerException", "a null option");
                }
                return 0;
            };
            v.push(c);
        }
        strings.push(v);
    }
    if strings[0].len() != strings[1].len() {
        raise(&mut env, "io/streamscore/ConfigException", "as many option keys as values");
        return 0;
    }
    let k: Vec<_> = strings[0].iter().map(|c| c.as_ptr()).collect();
    let v: Vec<_> = strings[1].iter().map(|c| c.as_ptr()).collect();
    let mut rt = SsRuntime { id: 0 };
    // SAFETY: k and v hold k.len() NUL-terminated strings each; `rt` is writable.
    let s = unsafe { ss_runtime_new(ptr(&model), k.as_ptr(), v.as_ptr(), k.len(), &mut rt) };
    handle(&mut env, s, rt.id)
}

/// `{fields, outputs}`.
#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_runtimeShape<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) -> jintArray {
    let (mut f, mut k) = (0usize, 0usize);
    // SAFETY: writable out-pointers.
    let s = unsafe { ss_runtime_shape(SsRuntime { id: h as u64 }, &mut f, &mut k) };
    if !ok(&mut env, s) {
        return std::ptr::null_mut();
    }
    ints(&mut env, &[f, k])
}

fn floats(env: &mut JNIEnv, a: &JFloatArray) -> Option<Vec<f32>> {
    if a.is_null() {
        raise(env, "java/lang/NullPointerException", "values must not be null");
        return None;
    }
    let n = env.get_array_length(a).ok()? as usize;
    let mut v = vec![0f32; n];
    env.get_float_array_region(a, 0, &mut v).ok()?;
    Some(v)
}

/// Queues one event; its ticket's number.
#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_runtimeSubmit<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    values: JFloatArray<'l>,
    key: jlong,
    timestamp_ms: jlong,
) -> jlong {
    let Some(v) = floats(&mut env, &values) else { return 0 };
    let mut t = SsTicket { id: 0 };
    // SAFETY: `v` holds its length; `t` is writable.
    let s = unsafe {
        ss_runtime_submit(
            SsRuntime { id: h as u64 },
            v.as_ptr(),
            v.len(),
            key as u64,
            timestamp_ms,
            &mut t,
        )
    };
    handle(&mut env, s, t.id)
}

/// Waits for a ticket (blocking, no array held): its values into `out`; the version.
#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_ticketWait<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    t: jlong,
    out: JFloatArray<'l>,
) -> jlong {
    let Some(mut v) = floats(&mut env, &out) else { return 0 };
    let mut version = 0u64;
    // SAFETY: `v` holds its length; `version` is writable; no statuses.
    let s = unsafe {
        ss_ticket_wait(
            SsTicket { id: t as u64 },
            v.as_mut_ptr(),
            v.len(),
            std::ptr::null_mut(),
            0,
            &mut version,
        )
    };
    if !ok(&mut env, s) {
        return 0;
    }
    let _ = env.set_float_array_region(&out, 0, &v);
    version as jlong
}

#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_ticketFree<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    t: jlong,
) {
    ok(&mut env, ss_ticket_free(SsTicket { id: t as u64 }));
}

#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_runtimePrometheus<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) -> jstring {
    let rt = SsRuntime { id: h as u64 };
    let mut needed = 0usize;
    // SAFETY: asking the size: no buffer, a writable `needed`.
    let s = unsafe { ss_runtime_prometheus(rt, std::ptr::null_mut(), 0, &mut needed) };
    if s != SsStatus::BufferTooSmall && !ok(&mut env, s) {
        return std::ptr::null_mut();
    }
    // The text grows while events are scored: ask again with the new size until it fits.
    let mut buf = Vec::new();
    loop {
        buf.resize(needed + 4096, 0);
        // SAFETY: `buf` holds its length.
        let s =
            unsafe { ss_runtime_prometheus(rt, buf.as_mut_ptr().cast(), buf.len(), &mut needed) };
        if s == SsStatus::BufferTooSmall {
            continue;
        }
        if !ok(&mut env, s) {
            return std::ptr::null_mut();
        }
        break;
    }
    let text = String::from_utf8_lossy(&buf[..needed - 1]).into_owned();
    env.new_string(text).map_or(std::ptr::null_mut(), |s| s.into_raw())
}

#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_runtimeSwap<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    path: JString<'l>,
    version: jlong,
    allow_schema_change: jboolean,
) -> jlong {
    let Ok(path) = c_string(&mut env, &path) else { return 0 };
    let mut live = 0u64;
    // SAFETY: a NUL-terminated string (or null: refused) and a writable out-pointer.
    let s = unsafe {
        ss_runtime_swap(
            SsRuntime { id: h as u64 },
            ptr(&path),
            version as u64,
            u32::from(allow_schema_change != 0),
            &mut live,
        )
    };
    if ok(&mut env, s) { live as jlong } else { 0 }
}

#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_runtimeRollback<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
    version: jlong,
) {
    ok(&mut env, ss_runtime_rollback(SsRuntime { id: h as u64 }, version as u64));
}

#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_runtimeLiveVersion<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) -> jlong {
    let mut v = 0u64;
    // SAFETY: a writable out-pointer.
    let s = unsafe { ss_runtime_live_version(SsRuntime { id: h as u64 }, &mut v) };
    if ok(&mut env, s) { v as jlong } else { 0 }
}

#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_runtimeShutdown<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) {
    ok(&mut env, ss_runtime_shutdown(SsRuntime { id: h as u64 }));
}

#[unsafe(no_mangle)]
extern "system" fn Java_io_streamscore_Native_runtimeFree<'l>(
    mut env: JNIEnv<'l>,
    _: JClass<'l>,
    h: jlong,
) {
    ok(&mut env, ss_runtime_free(SsRuntime { id: h as u64 }));
}
