/* hostcall.c - host calls: how `fs::read(path)` reaches the host.
 *
 * The compiler turns a host function call into rt_host_<n>(op, args...). The
 * arguments cross as one CBOR array written into guest memory; the host
 * answers through the single import `peerbox.call(op, ptr, len) -> i64` by
 * writing a CBOR reply into memory it allocated with rt_alloc and returning
 * (len << 32) | ptr. The reply is {"ok": value} or {"err": [kind, message]};
 * an err becomes a catchable error of that kind. A reply of 0 stops the run
 * (rt_fault() = 2), for what a script must not catch, such as a spent
 * host-call budget. One crossing each way, not one per value.
 */
#include "rt.h"

__attribute__((import_module("peerbox"), import_name("call")))
int64_t host_call(int32_t op, int32_t ptr, int32_t len);

static V hostcall(int32_t op, int n, const V *args) {
    Buf b;
    buf_init(&b, 64);
    cbor_head(&b, 4, (uint64_t)n);
    for (int i = 0; i < n; i++)
        if (cbor_encode(&b, args[i], 1)) return raise_too_deep();
    int64_t r = host_call(op, (int32_t)(uintptr_t)b.p, (int32_t)b.len);
    uint32_t len = (uint32_t)((uint64_t)r >> 32), ptr = (uint32_t)r;
    if (ptr == 0) host_stop(); /* not catchable: e.g. the run's host-call budget is spent */
    V reply;
    const char *err = 0;
    if (cbor_decode((const uint8_t *)(uintptr_t)ptr, len, &reply, &err) || reply.tag != T_MAP)
        return raise_c(K_INVALID, "the host call returned a malformed reply");
    Entry *ok = map_find(MAPP(reply), vcstr("ok"));
    if (ok) return entry_val(ok);
    Entry *e = map_find(MAPP(reply), vcstr("err"));
    if (e && e->tag == T_ARRAY) {
        Array *a = ARR(entry_val(e));
        if (a->len == 2 && a->data[0].tag == T_STR && a->data[1].tag == T_STR)
            return raise_host(slot_get(&a->data[0]), slot_get(&a->data[1]));
    }
    return raise_c(K_INVALID, "the host call returned a malformed reply");
}

EXPORT("rt_host_0") V rt_host_0(int32_t op) { return hostcall(op, 0, 0); }

EXPORT("rt_host_1") V rt_host_1(int32_t op, int32_t t1, int64_t p1) {
    V a[1] = {mk(t1, p1)};
    return hostcall(op, 1, a);
}

EXPORT("rt_host_2") V rt_host_2(int32_t op, int32_t t1, int64_t p1, int32_t t2, int64_t p2) {
    V a[2] = {mk(t1, p1), mk(t2, p2)};
    return hostcall(op, 2, a);
}

EXPORT("rt_host_3")
V rt_host_3(int32_t op, int32_t t1, int64_t p1, int32_t t2, int64_t p2, int32_t t3, int64_t p3) {
    V a[3] = {mk(t1, p1), mk(t2, p2), mk(t3, p3)};
    return hostcall(op, 3, a);
}
