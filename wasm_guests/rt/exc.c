/* exc.c - the pending error: raising, line recording, catching.
 *
 * A failing function records the error here and returns (EXC, 0). The
 * compiler calls rt_set_line where it first sees the EXC (only the first call
 * after a raise counts, so the innermost line wins) and rt_exc_take in a
 * `catch`, which clears the error and returns what `catch (e)` binds.
 */
#include "rt.h"

static const char *const KIND_NAMES[] = {
    "division_by_zero", "integer_overflow", "index_out_of_range",
    "type_mismatch",    "not_found",        "arity",
    "invalid_argument", "too_deep",         "throw",
    "host",
};

static int pending;
static int kind;
static V message; /* string */
static V thrown;  /* the thrown value for K_THROW */
static V host_kind; /* the kind string for K_HOST */
static int32_t line_code;
static int line_set;

const char *kind_name(int k) { return KIND_NAMES[k]; }

void exc_reset(void) {
    pending = 0;
    line_set = 0;
    line_code = 0;
    message = vcstr("");
    thrown = unit();
}

int exc_pending(void) { return pending; }
int exc_kind(void) { return kind; }
V exc_kind_str(void) { return kind == K_HOST ? host_kind : vcstr(KIND_NAMES[kind]); }

V raise_host(V k, V msg) {
    raise_v(K_HOST, msg);
    host_kind = k;
    return exc();
}
V exc_message(void) { return message; }
V exc_value(void) { return thrown; }
int32_t exc_line_code(void) { return line_code; }

V raise_v(int k, V msg) {
    pending = 1;
    kind = k;
    message = msg;
    thrown = unit();
    line_set = 0;
    line_code = 0;
    return exc();
}

V raise_c(int k, const char *m) { return raise_v(k, vcstr(m)); }

V raise_buf(int k, Buf *b) { return raise_v(k, buf_str(b)); }

V raise_type2(const char *verb, V a, const char *mid, V b) {
    Buf buf;
    buf_init(&buf, 64);
    buf_cstr(&buf, verb);
    buf_cstr(&buf, type_name(a.tag));
    buf_cstr(&buf, mid);
    buf_cstr(&buf, type_name(b.tag));
    return raise_buf(K_TYPE, &buf);
}

V raise_type1(const char *pre, V a, const char *post) {
    Buf buf;
    buf_init(&buf, 64);
    buf_cstr(&buf, pre);
    buf_cstr(&buf, type_name(a.tag));
    buf_cstr(&buf, post);
    return raise_buf(K_TYPE, &buf);
}

/* "function not found: name(t1, t2)" */
V raise_not_found_fn(const char *name, int n, const V *args) {
    Buf buf;
    buf_init(&buf, 64);
    buf_cstr(&buf, "function not found: ");
    buf_cstr(&buf, name);
    buf_byte(&buf, '(');
    for (int i = 0; i < n; i++) {
        if (i) buf_cstr(&buf, ", ");
        buf_cstr(&buf, type_name(args[i].tag));
    }
    buf_byte(&buf, ')');
    return raise_buf(K_NOT_FOUND, &buf);
}

V raise_index(int64_t i, uint32_t len, const char *what) {
    Buf buf;
    buf_init(&buf, 64);
    buf_cstr(&buf, "index ");
    buf_int(&buf, i);
    buf_cstr(&buf, " out of range for ");
    buf_cstr(&buf, what);
    buf_cstr(&buf, " of length ");
    buf_int(&buf, len);
    return raise_buf(K_INDEX, &buf);
}

V raise_too_deep(void) { return raise_c(K_TOO_DEEP, "value nested deeper than 128 levels"); }

/* ---- exports ------------------------------------------------------------ */

void exc_gc_mark(void) {
    gc_mark_value(message);
    gc_mark_value(thrown);
    gc_mark_value(host_kind);
}

/* `throw v`: raise kind "throw" with that value. */
EXPORT("rt_throw") V rt_throw(int32_t t, int64_t p) {
    raise_v(K_THROW, vcstr(""));
    thrown = mk(t, p);
    return exc();
}

/* A bare `throw;` in a catch block, given what the catch caught. */
EXPORT("rt_rethrow") V rt_rethrow(int32_t t, int64_t p) {
    if (t == T_MAP && MAPP(mk(t, p))->exc_kind) {
        /* `throw;` re-throwing the error map rt_exc_take made: same kind and message */
        Map *m = MAPP(mk(t, p));
        Entry *msg = map_find(m, vcstr("message"));
        V text = msg && msg->tag == T_STR ? entry_val(msg) : vcstr("");
        if ((int)m->exc_kind - 1 == K_HOST) {
            Entry *k = map_find(m, vcstr("kind"));
            return raise_host(k && k->tag == T_STR ? entry_val(k) : vcstr("host"), text);
        }
        return raise_v((int)m->exc_kind - 1, text);
    }
    return rt_throw(t, p);
}

EXPORT("rt_set_line") void rt_set_line(int32_t code) {
    if (pending && !line_set) {
        line_code = code;
        line_set = 1;
    }
}

EXPORT("rt_exc_take") V rt_exc_take(void) {
    if (!pending) return unit();
    pending = 0;
    line_set = 0;
    if (kind == K_THROW) return thrown;
    Map *m = map_new(4);
    map_set(m, vcstr("kind"), exc_kind_str());
    map_set(m, vcstr("message"), message);
    map_set(m, vcstr("line"), vint(line_code & 0xffffff));
    m->exc_kind = (uint32_t)kind + 1;
    return vptr(T_MAP, m);
}

EXPORT("rt_err_bool") V rt_err_bool(int32_t t, int64_t p) {
    (void)p;
    Buf buf;
    buf_init(&buf, 48);
    buf_cstr(&buf, "expected a bool, found ");
    buf_cstr(&buf, type_name(t));
    return raise_buf(K_TYPE, &buf);
}

EXPORT("rt_err_not_fn") V rt_err_not_fn(int32_t t, int64_t p) {
    (void)p;
    Buf buf;
    buf_init(&buf, 48);
    buf_cstr(&buf, type_name(t));
    buf_cstr(&buf, " is not a function");
    return raise_buf(K_TYPE, &buf);
}

EXPORT("rt_err_arity") V rt_err_arity(int32_t expected, int32_t got) {
    Buf buf;
    buf_init(&buf, 64);
    buf_cstr(&buf, "closure expects ");
    buf_int(&buf, expected);
    buf_cstr(&buf, expected == 1 ? " argument, got " : " arguments, got ");
    buf_int(&buf, got);
    return raise_buf(K_ARITY, &buf);
}

EXPORT("rt_err_overflow") V rt_err_overflow(void) { return raise_c(K_OVERFLOW, "integer overflow"); }
