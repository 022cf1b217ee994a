/* The data set walk of headerscan._scan_fast, in C (loaded through ctypes by nativewalk.py).
 *
 * Same rules as the Python walker (headerscan._walk, _skip_sequence, _encapsulated_length),
 * which stays the reference: the tests compare both on every file they have. The walk keeps
 * the value bytes of the requested elements, skips every other element by its length, stops at
 * the pixel data (unless a later tag is requested), and reports the first problem as an error
 * code plus its numbers; the Python side turns the code into the same _Fallback/_Broken message
 * as the Python walker. The plain values of the requested tags are then formatted here too
 * (format_value below), as one buffer of texts: building a Python object per element and
 * formatting it in Python cost more than the walk; what is not plain is left to Python.
 *
 * Every length read from the file is checked against the file size before it moves the
 * position, the position only grows, and sequence nesting is limited to 32 levels, so a
 * corrupt file ends in an error code, never in a loop or a read outside the buffers.
 * Plain C99 and POSIX pread; no Python headers.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define DBW_VERSION 4

/* return codes of dbw_walk (a count of records otherwise) */
#define DBW_ERROR (-1)     /* out[4..7]: error kind and its numbers a, b, c */
#define DBW_TOO_SMALL (-2) /* out[4]: records needed, out[5]: value bytes needed, out[6]: text bytes needed */
#define DBW_DEFER (-3)     /* dbw_scan: an unusual file, for Python's own path */

/* error kinds: nativewalk.py holds the message of each (the Python walker's text) */
enum {
    E_TRUNCATED_HEADER = 1, /* broken: truncated element header at offset a */
    E_TRUNCATED_NEED,       /* broken: truncated: b bytes needed at offset a */
    E_SHORT_READ,           /* broken: short read at offset a */
    E_PIXEL_TRUNCATED,      /* broken: pixel data truncated: b bytes at offset a */
    E_ELEMENT_PAST_END,     /* broken: element (tag c) at offset a has length b, past the end */
    E_ITEM_ELEMENT_PAST_END,/* broken: element at offset a runs past the end of the file */
    E_BAD_FRAGMENT,         /* broken: bad encapsulated pixel data item at offset a */
    E_FRAGMENT_PAST_END,    /* broken: encapsulated pixel data fragment at offset a runs past the end */
    E_INVALID_VR,           /* fallback: invalid VR (bytes b) at offset a */
    E_ITEM_AT_TOP,          /* fallback: item tag at top level at offset a */
    E_UNDEFINED_LENGTH,     /* fallback: undefined length for VR (bytes b) at offset a */
    E_EXPECTED_ITEM,        /* fallback: expected an item in a sequence at offset a */
    E_TOO_DEEP,             /* fallback: sequences nested too deep */
    E_OS                    /* OSError: errno b at offset a */
};

#define ITEM 0xFFFEE000u
#define SEQUENCE_END 0xFFFEE0DDu
#define UNDEFINED 0xFFFFFFFFu
#define MAX_DEPTH 32
#ifndef WINDOW
#define WINDOW 8192 /* bytes read at once, as headerscan.FIRST_READ (8-64 KiB measured: no better) */
#endif
#define VR_SQ ('S' | ('Q' << 8))
#define VR_UN ('U' | ('N' << 8))

typedef struct {
    int fd;
    int64_t size;
    const uint8_t *buf; /* the current window: `first` from Python, then `own` */
    int64_t base;       /* file offset of buf[0] */
    int64_t len;        /* bytes in buf */
    uint8_t own[WINDOW];
    int64_t *info;
} Walk;

static uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static int64_t fail(Walk *w, int64_t kind, int64_t a, int64_t b, int64_t c) {
    w->info[0] = kind;
    w->info[1] = a;
    w->info[2] = b;
    w->info[3] = c;
    return -1;
}

/* VR_KINDS[(a - 'A') * 26 + b - 'A']: 1 for a VR with a 2-byte length, 2 for one with a reserved
 * field and a 4-byte length (PS3.5 7.1.2), 0 for two letters that are not a VR */
#define V(a, b, kind) [((a) - 'A') * 26 + (b) - 'A'] = kind
static const uint8_t VR_KINDS[26 * 26] = {
    V('A', 'E', 1), V('A', 'S', 1), V('A', 'T', 1), V('C', 'S', 1), V('D', 'A', 1), V('D', 'S', 1), V('D', 'T', 1),
    V('F', 'D', 1), V('F', 'L', 1), V('I', 'S', 1), V('L', 'O', 1), V('L', 'T', 1), V('P', 'N', 1), V('S', 'H', 1),
    V('S', 'L', 1), V('S', 'S', 1), V('S', 'T', 1), V('T', 'M', 1), V('U', 'I', 1), V('U', 'L', 1), V('U', 'S', 1),
    V('O', 'B', 2), V('O', 'D', 2), V('O', 'F', 2), V('O', 'L', 2), V('O', 'V', 2), V('O', 'W', 2), V('S', 'Q', 2),
    V('S', 'V', 2), V('U', 'C', 2), V('U', 'N', 2), V('U', 'R', 2), V('U', 'T', 2), V('U', 'V', 2),
};
#undef V

static int vr_kind(uint8_t a, uint8_t b) {
    unsigned i = (unsigned)a - 'A', j = (unsigned)b - 'A';
    return i < 26 && j < 26 ? VR_KINDS[i * 26 + j] : 0;
}

static int valid_vr(const uint8_t *p) { return p[0] > 0x40 && p[0] < 0x5B && p[1] > 0x40 && p[1] < 0x5B; }

/* pread until `want` bytes or the end of the file; the count read, or -1 with errno set */
static int64_t read_at(int fd, uint8_t *to, int64_t want, int64_t pos) {
    int64_t got = 0;
    while (got < want) {
        ssize_t n = pread(fd, to + got, (size_t)(want - got), (off_t)(pos + got));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        got += n;
    }
    return got;
}

/* A pointer to `need` (<= 12) bytes at file offset `pos`, reading a new window when needed;
 * NULL with the error set, as _File.window. */
static const uint8_t *window(Walk *w, int64_t pos, int64_t need) {
    int64_t rel = pos - w->base;
    if (rel >= 0 && rel + need <= w->len)
        return w->buf + rel;
    if (pos + need > w->size) {
        fail(w, E_TRUNCATED_NEED, pos, need, 0);
        return NULL;
    }
    int64_t got = read_at(w->fd, w->own, WINDOW, pos);
    if (got < 0) {
        fail(w, E_OS, pos, errno, 0);
        return NULL;
    }
    w->buf = w->own;
    w->base = pos;
    w->len = got;
    if (got < need) {
        fail(w, E_SHORT_READ, pos, 0, 0);
        return NULL;
    }
    return w->buf;
}

/* the 8 or 12 bytes of an element header at `pos` (8 near the end of the file) */
static const uint8_t *header(Walk *w, int64_t pos) { return window(w, pos, pos + 12 <= w->size ? 12 : 8); }

/* Offset just after an undefined-length sequence value starting at `pos`, or -1 (error set). */
static int64_t skip_sequence(Walk *w, int64_t pos, int implicit, int depth) {
    const int64_t size = w->size;
    if (depth > MAX_DEPTH)
        return fail(w, E_TOO_DEEP, 0, 0, 0);
    for (;;) {
        const uint8_t *p = header(w, pos);
        if (!p)
            return -1;
        uint32_t tag = ((uint32_t)u16(p) << 16) | u16(p + 2), length = u32(p + 4);
        pos += 8;
        if (tag == SEQUENCE_END)
            return pos;
        if (tag != ITEM)
            return fail(w, E_EXPECTED_ITEM, pos - 8, 0, 0);
        if (length != UNDEFINED) {
            pos += length; /* checked by the next header read */
            continue;
        }
        /* an undefined-length item; in an explicit VR sequence it may be implicit VR (PS3.5 6.2.2) */
        int item_implicit = implicit;
        if (!implicit) {
            p = window(w, pos, 8);
            if (!p)
                return -1;
            item_implicit = !valid_vr(p + 4);
        }
        for (;;) {
            p = header(w, pos);
            if (!p)
                return -1;
            uint16_t group = u16(p), elem = u16(p + 2), vr = 0;
            int64_t hlen = 8;
            if (item_implicit || (p[0] == 0xFE && p[1] == 0xFF)) {
                length = u32(p + 4);
            } else {
                vr = (uint16_t)(p[4] | (p[5] << 8));
                int kind = vr_kind(p[4], p[5]);
                if (kind == 1) {
                    length = u16(p + 6);
                } else if (kind == 2) {
                    if (pos + 12 > size)
                        return fail(w, E_TRUNCATED_HEADER, pos, 0, 0);
                    length = u32(p + 8);
                    hlen = 12;
                } else {
                    return fail(w, E_INVALID_VR, pos, vr, 0);
                }
            }
            pos += hlen;
            if (group == 0xFFFE && elem == 0xE00D) /* item delimiter */
                break;
            if (length == UNDEFINED) {
                pos = skip_sequence(w, pos, item_implicit || vr == VR_UN, depth + 1);
                if (pos < 0)
                    return -1;
            } else {
                pos += length;
                if (pos > size)
                    return fail(w, E_ITEM_ELEMENT_PAST_END, pos - hlen - (int64_t)length, 0, 0);
            }
        }
    }
}

/* Length of an encapsulated pixel data value (items up to the delimiter), or -1 (error set). */
static int64_t encapsulated_length(Walk *w, int64_t start) {
    int64_t pos = start;
    for (;;) {
        const uint8_t *p = header(w, pos);
        if (!p)
            return -1;
        uint32_t tag = ((uint32_t)u16(p) << 16) | u16(p + 2), length = u32(p + 4);
        if (tag == SEQUENCE_END)
            return pos - start;
        if (tag != ITEM || length == UNDEFINED)
            return fail(w, E_BAD_FRAGMENT, pos, 0, 0);
        pos += 8 + (int64_t)length;
        if (pos > w->size)
            return fail(w, E_FRAGMENT_PAST_END, pos - length, 0, 0);
    }
}

/* A one-hash filter of the kept tags (4096 bits): most elements are not kept, and the binary
 * search that answered for each of them was most of the walk's time on long private headers. */
#define FILTER_WORDS 64
static uint32_t filter_bit(uint32_t tag) { return (uint32_t)(tag * 2654435761u) >> 20; }

/* Index of `tag` in the sorted `keep`, or -1. */
static int keep_index(uint32_t tag, const uint32_t *keep, int nkeep) {
    int lo = 0, hi = nkeep;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (keep[mid] < tag)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < nkeep && keep[lo] == tag ? lo : -1;
}

static int kept(uint32_t tag, uint16_t vr, const uint64_t *filter, const uint32_t *keep, int nkeep,
                const uint16_t *groups, int ngroups) {
    uint32_t bit = filter_bit(tag);
    if (vr != VR_SQ && (filter[bit >> 6] >> (bit & 63)) & 1 && keep_index(tag, keep, nkeep) >= 0)
        return 1;
    uint16_t group = (uint16_t)(tag >> 16), elem = (uint16_t)tag;
    if (elem < 0x10 || elem > 0xFF)
        return 0;
    for (int i = 0; i < ngroups; i++)
        if (groups[i] == group)
            return 1;
    return 0;
}

/* --- values --------------------------------------------------------------------------------------
 * The plain cases of headerscan's per-VR rules (_FAST_CONVERTERS), formatted as they format them:
 * a value qualifies when its bytes are printable ASCII (0x20-0x7E) but for a trailing run of
 * spaces and NULs, and, for DS and IS, when every item has the plain form of a number (a subset
 * of what Python's float() and int() accept). Anything else (FL and FD, whose text is Python's
 * float repr; control characters, non-ASCII text, ISO 2022 escapes; PN with '=' groups; numbers
 * of an odd length; AT, UN, no VR) is left to Python, which applies its own rules to it, so a
 * value formatted here is the value the Python rule gives, and nothing else is decided here. */
#define VR(a, b) ((uint16_t)((a) | ((b) << 8)))

typedef struct {
    uint8_t *p;
    int64_t len;
} Text;

/* length of v without its trailing run of spaces and NULs, or -1 when the rest is not printable */
static int64_t printable_length(const uint8_t *v, int64_t n) {
    int64_t m = n;
    while (m > 0 && (v[m - 1] == ' ' || v[m - 1] == 0))
        m--;
    for (int64_t i = 0; i < m; i++)
        if (v[i] < 0x20 || v[i] > 0x7E)
            return -1;
    return m;
}

static int has_nul(const uint8_t *v, int64_t n) { return memchr(v, 0, (size_t)n) != NULL; }

/* 1 when s[0..n) is [+-]?digits (Python's int() accepts it) */
static int plain_integer(const uint8_t *s, int64_t n) {
    int64_t i = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    if (i == n)
        return 0;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* 1 when s[0..n) is [+-]?(digits[.digits*]|.digits)([eE][+-]?digits)? (Python's float() accepts it) */
static int plain_decimal(const uint8_t *s, int64_t n) {
    int64_t i = 0, digits = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        digits++;
    if (i < n && s[i] == '.')
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
    if (!digits)
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        int64_t exponent = 0;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            exponent++;
        if (!exponent)
            return 0;
    }
    return i == n;
}

enum { ITEMS_RSTRIP, ITEMS_STRIP, ITEMS_INTEGER, ITEMS_DECIMAL };

/* v[0..m) split at backslashes, each item stripped of spaces on the right (and the left, but for
 * ITEMS_RSTRIP), joined by backslashes; 0 when an item is not a plain number (ITEMS_INTEGER,
 * ITEMS_DECIMAL) */
static int items(const uint8_t *v, int64_t m, int rule, Text *t) {
    int64_t start = 0;
    for (;;) {
        int64_t end = start;
        while (end < m && v[end] != '\\')
            end++;
        int64_t a = start, b = end;
        while (b > a && v[b - 1] == ' ')
            b--;
        if (rule != ITEMS_RSTRIP)
            while (a < b && v[a] == ' ')
                a++;
        if ((rule == ITEMS_INTEGER && !plain_integer(v + a, b - a)) ||
            (rule == ITEMS_DECIMAL && !plain_decimal(v + a, b - a)))
            return 0;
        memcpy(t->p + t->len, v + a, (size_t)(b - a));
        t->len += b - a;
        if (end == m)
            return 1;
        t->p[t->len++] = '\\';
        start = end + 1;
    }
}

static void put_unsigned(Text *t, uint64_t x) {
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + x % 10);
        x /= 10;
    } while (x);
    while (n)
        t->p[t->len++] = (uint8_t)digits[--n];
}

static void put_signed(Text *t, int64_t x) {
    if (x < 0) {
        t->p[t->len++] = '-';
        put_unsigned(t, (uint64_t)0 - (uint64_t)x);
    } else {
        put_unsigned(t, (uint64_t)x);
    }
}

/* little-endian numbers of `width` bytes, str() of each joined by backslashes; 0 for a partial value */
static int numbers(const uint8_t *v, int64_t n, int width, int is_signed, Text *t) {
    if (n % width)
        return 0;
    for (int64_t i = 0; i < n; i += width) {
        if (i)
            t->p[t->len++] = '\\';
        uint64_t x = 0;
        for (int k = width - 1; k >= 0; k--)
            x = (x << 8) | v[i + k];
        if (!is_signed) {
            put_unsigned(t, x);
        } else if (width == 2) {
            put_signed(t, (int16_t)(uint16_t)x);
        } else if (width == 4) {
            put_signed(t, (int32_t)(uint32_t)x);
        } else {
            put_signed(t, (int64_t)x);
        }
    }
    return 1;
}

/* The text of a non-empty value of VR `vr` appended to t (at most 4 * n bytes), 1; or 0 with t
 * unchanged: Python decides. */
static int format_value(uint16_t vr, const uint8_t *v, int64_t n, Text *t) {
    int64_t before = t->len, m;
    int done = 0;
    switch (vr) {
    case VR('U', 'S'): return numbers(v, n, 2, 0, t);
    case VR('S', 'S'): return numbers(v, n, 2, 1, t);
    case VR('U', 'L'): return numbers(v, n, 4, 0, t);
    case VR('S', 'L'): return numbers(v, n, 4, 1, t);
    case VR('U', 'V'): return numbers(v, n, 8, 0, t);
    case VR('S', 'V'): return numbers(v, n, 8, 1, t);
    case VR('O', 'B'): case VR('O', 'W'): case VR('O', 'F'): case VR('O', 'D'): case VR('O', 'L'):
    case VR('O', 'V'): case VR('S', 'Q'):
        return 1; /* binary: '' */
    default:
        break;
    }
    m = printable_length(v, n);
    if (m < 0)
        return 0;
    switch (vr) {
    case VR('P', 'N'): /* '=' groups have their own rules in pydicom */
        if (memchr(v, '=', (size_t)m))
            return 0;
        /* fall through */
    case VR('C', 'S'): case VR('A', 'S'): case VR('D', 'A'): case VR('T', 'M'): case VR('D', 'T'):
    case VR('L', 'T'): case VR('S', 'T'): case VR('U', 'T'):
        memcpy(t->p + t->len, v, (size_t)m); /* the whole value right-stripped of spaces and NULs */
        t->len += m;
        return 1;
    case VR('U', 'R'): /* right-stripped of whitespace only: a NUL stays */
        if (has_nul(v, n))
            return 0;
        memcpy(t->p + t->len, v, (size_t)m);
        t->len += m;
        return 1;
    case VR('L', 'O'): case VR('S', 'H'): case VR('U', 'C'):
        done = items(v, m, ITEMS_RSTRIP, t);
        break;
    case VR('U', 'I'):
        done = items(v, m, ITEMS_STRIP, t);
        break;
    case VR('A', 'E'): /* items stripped of whitespace only: a NUL stays */
        done = !has_nul(v, n) && items(v, m, ITEMS_STRIP, t);
        break;
    case VR('I', 'S'):
        done = items(v, m, ITEMS_INTEGER, t);
        break;
    case VR('D', 'S'):
        done = items(v, m, ITEMS_DECIMAL, t);
        break;
    default: /* FL, FD (Python's float repr), AT, UN */
        break;
    }
    if (!done)
        t->len = before;
    return done;
}

int dbw_version(void) { return DBW_VERSION; }

/* the SHA-256 of this file, given by nativewalk.build: a library built from other code is not loaded */
#ifndef DBW_SOURCE_SHA256
#define DBW_SOURCE_SHA256 ""
#endif
const char *dbw_source_sha256(void) { return DBW_SOURCE_SHA256; }

/* What dbw_walk looks for, set once per tag plan: headerscan._TagPlan's keep (sorted),
 * private_groups and last_tag; for the values, keep_slot gives for each kept tag its index among
 * the requested data set tags (-1 for a context tag) and implicit_vrs the dictionary VR of each
 * (its 2 bytes as a little-endian number, 0: none) for implicit VR files. */
typedef struct {
    const uint32_t *keep;
    const int32_t *keep_slot;
    int64_t nkeep;
    const uint16_t *private_groups;
    int64_t ngroups;
    int64_t last_tag;
    int64_t ndata;
    const uint16_t *implicit_vrs;
} DbwPlan;

/* One call's file, options and output buffers (a thread reuses it from file to file; one struct
 * instead of many arguments: ctypes converts each argument on every call).
 *
 * fd, size: the open file; first/first_base/first_len: the window Python holds already (bytes
 * at file offset first_base); pos: where the data set starts; implicit: implicit VR.
 * with_values: also format the values of the plan's data set tags.
 * records: 5 columns of max_records int64, one row per kept element: tag, VR (its 2 bytes as a
 * little-endian number, 0 in implicit VR), value offset in the file, start and end of the value
 * in `values`, where the values follow one another.
 * text: each requested data set tag's text (see format_value; '' when absent, empty or left to
 * Python), separated by NULs, in the plan's order; slots (3 * ndata int32): scratch, then from
 * slots[ndata] the pairs (index, record) of the values left to Python.
 * out[0], out[1]: pixel data offset and length (-1 when none); out[2]: value bytes used;
 * out[4..7]: error kind and numbers (DBW_ERROR) or the sizes needed (DBW_TOO_SMALL: records,
 * value bytes, text bytes); out[8]: text bytes used; out[9]: count of values left to Python. */
typedef struct {
    int64_t fd, size;
    const uint8_t *first;
    int64_t first_base, first_len, pos, implicit, with_values;
    int64_t *records;
    int64_t max_records;
    uint8_t *values;
    int64_t values_cap;
    uint8_t *text;
    int64_t text_cap;
    int32_t *slots;
    int64_t *out;
} DbwCall;

/* The walk of the data set from `pos` with the window w holds, then the values (see DbwCall);
 * `prefix` text bytes are there already (dbw_scan's file meta texts), so values follow a NUL. */
static int64_t walk_data_set(Walk *w, const DbwPlan *plan, DbwCall *c, int64_t pos, int implicit, int64_t prefix) {
    const int fd = (int)c->fd, nkeep = (int)plan->nkeep, ngroups = (int)plan->ngroups;
    const int ndata = c->with_values ? (int)plan->ndata : 0;
    const int64_t size = c->size, max_records = c->max_records, values_cap = c->values_cap, text_cap = c->text_cap;
    const uint32_t *keep = plan->keep, last_tag = (uint32_t)plan->last_tag;
    const int32_t *keep_slot = plan->keep_slot;
    const uint16_t *private_groups = plan->private_groups, *implicit_vrs = plan->implicit_vrs;
    int64_t *records = c->records, *out = c->out;
    uint8_t *values = c->values, *text = c->text;
    int32_t *slots = c->slots;
    uint64_t filter[FILTER_WORDS] = {0};
    for (int i = 0; i < nkeep; i++) {
        uint32_t bit = filter_bit(keep[i]);
        filter[bit >> 6] |= (uint64_t)1 << (bit & 63);
    }
    int32_t *last = slots; /* the record of each requested tag: a later duplicate replaces an earlier one */
    for (int i = 0; i < ndata; i++)
        last[i] = -1;
    int64_t pixel_offset = -1, pixel_length = -1, count = 0, used = 0, result = 0;
    int overflow = 0;
#define FAIL(...) do { fail(w, __VA_ARGS__); result = DBW_ERROR; goto done; } while (0)
    while (pos < size) {
        const uint8_t *p;
        int64_t rel = pos - w->base;
        if (rel >= 0 && rel + 12 <= w->len) {
            p = w->buf + rel;
        } else {
            /* past the pixel data, bytes that are not an element end the data set (as for pydicom) */
            if (pos + 8 > size) {
                if (pixel_offset >= 0)
                    break;
                FAIL(E_TRUNCATED_HEADER, pos, 0, 0);
            }
            p = header(w, pos);
            if (!p) {
                result = DBW_ERROR;
                goto done;
            }
        }
        uint16_t group = u16(p), elem = u16(p + 2), vr = 0;
        uint32_t length;
        int64_t hlen = 8;
        if (implicit) {
            length = u32(p + 4);
        } else {
            vr = (uint16_t)(p[4] | (p[5] << 8));
            int kind = vr_kind(p[4], p[5]);
            if (kind == 1) {
                length = u16(p + 6);
            } else if (kind == 2) {
                if (pos + 12 > size) {
                    if (pixel_offset >= 0)
                        break;
                    FAIL(E_TRUNCATED_HEADER, pos, 0, 0);
                }
                length = u32(p + 8);
                hlen = 12;
            } else if (pixel_offset >= 0) {
                break;
            } else if (group == 0xFFFE) {
                FAIL(E_ITEM_AT_TOP, pos, 0, 0);
            } else {
                FAIL(E_INVALID_VR, pos, vr, 0);
            }
        }
        uint32_t tag = ((uint32_t)group << 16) | elem;
        int64_t value_pos = pos + hlen;
        if (group == 0x7FE0 && (tag == 0x7FE00008u || tag == 0x7FE00009u || tag == 0x7FE00010u)) {
            if (length == UNDEFINED) {
                int64_t n = encapsulated_length(w, value_pos);
                if (n < 0) {
                    result = DBW_ERROR;
                    goto done;
                }
                pixel_offset = value_pos;
                pixel_length = n;
                pos = value_pos + n + 8;
            } else {
                pixel_offset = value_pos;
                pixel_length = length;
                if (value_pos + (int64_t)length > size)
                    FAIL(E_PIXEL_TRUNCATED, value_pos, length, 0);
                pos = value_pos + length;
            }
            if (tag >= last_tag)
                break;
            continue;
        }
        if (group == 0xFFFE)
            FAIL(E_ITEM_AT_TOP, pos, 0, 0);
        if (length == UNDEFINED) {
            if (implicit || vr == VR_SQ || vr == VR_UN) {
                pos = skip_sequence(w, value_pos, implicit || vr == VR_UN, 0);
                if (pos < 0) {
                    result = DBW_ERROR;
                    goto done;
                }
                continue;
            }
            FAIL(E_UNDEFINED_LENGTH, pos, vr, 0);
        }
        int64_t end = value_pos + length;
        if (end > size) {
            if (pixel_offset >= 0)
                break;
            FAIL(E_ELEMENT_PAST_END, pos, length, tag);
        }
        if (kept(tag, vr, filter, keep, nkeep, private_groups, ngroups)) {
            if (count < max_records && used + (int64_t)length <= values_cap) {
                int64_t vrel = value_pos - w->base;
                if (vrel >= 0 && vrel + (int64_t)length <= w->len) {
                    memcpy(values + used, w->buf + vrel, length);
                } else {
                    int64_t got = read_at(fd, values + used, length, value_pos);
                    if (got < 0)
                        FAIL(E_OS, value_pos, errno, 0);
                    if (got < (int64_t)length)
                        FAIL(E_SHORT_READ, value_pos, 0, 0);
                }
                records[count] = tag;
                records[max_records + count] = vr;
                records[2 * max_records + count] = value_pos;
                records[3 * max_records + count] = used;
                records[4 * max_records + count] = used + length;
                if (ndata > 0) {
                    int k = keep_index(tag, keep, nkeep);
                    if (k >= 0 && keep_slot[k] >= 0 && keep_slot[k] < ndata)
                        last[keep_slot[k]] = (int32_t)count;
                }
            } else {
                overflow = 1;
            }
            count++;
            used += length;
        }
        pos = end;
    }
    out[0] = pixel_offset;
    out[1] = pixel_length;
    out[2] = used;
    out[8] = prefix;
    out[9] = 0;
    if (overflow) {
        out[4] = count;
        out[5] = used;
        out[6] = 0;
        result = DBW_TOO_SMALL;
        goto done;
    }
    result = count;
    if (ndata > 0) {
        /* every value's text fits in 4 bytes per value byte (a 2-byte SS: "-32768\") plus its separator */
        int64_t need = 0;
        for (int i = 0; i < ndata; i++)
            if (last[i] >= 0)
                need += 4 * (records[4 * max_records + last[i]] - records[3 * max_records + last[i]]);
        need += prefix + ndata;
        if (need > text_cap) {
            out[4] = count;
            out[5] = used;
            out[6] = need;
            result = DBW_TOO_SMALL;
            goto done;
        }
        Text t = {text, prefix};
        int32_t *pending = slots + ndata;
        int64_t npending = 0;
        for (int i = 0; i < ndata; i++) {
            if (i || prefix > 0) /* the file meta texts hold two NULs at least */
                t.p[t.len++] = 0;
            int32_t r = last[i];
            if (r < 0)
                continue;
            int64_t start = records[3 * max_records + r], n = records[4 * max_records + r] - start;
            if (n == 0)
                continue;
            uint16_t value_vr = implicit ? implicit_vrs[i] : (uint16_t)records[max_records + r];
            if (!value_vr || !format_value(value_vr, values + start, n, &t)) {
                pending[2 * npending] = i;
                pending[2 * npending + 1] = r;
                npending++;
            }
        }
        out[8] = t.len;
        out[9] = npending;
    }
done:
    return result;
#undef FAIL
}

static void start_walk(Walk *w, DbwCall *c) {
    w->fd = (int)c->fd;
    w->size = c->size;
    w->info = c->out + 4;
}

/* Walk the data set of c->fd from c->pos (implicit VR: c->implicit) with the tags of `plan`, from
 * the window Python read (c->first). Returns the count of records, DBW_ERROR or DBW_TOO_SMALL
 * (the walk is complete and error-free but the outputs are too small: call again with at least
 * the sizes given). */
int64_t dbw_walk(const DbwPlan *plan, DbwCall *c) {
    Walk walk;
    start_walk(&walk, c);
    walk.buf = c->first;
    walk.base = c->first_base;
    walk.len = c->first_len;
    return walk_data_set(&walk, plan, c, c->pos, (int)c->implicit, 0);
}

/* headerscan._uid of a file meta value, for printable ASCII values (but for a trailing run of
 * spaces and NULs): without that run and without leading spaces; -1 for any other value. */
static int64_t uid_text(const uint8_t *v, int64_t n, int64_t *start) {
    int64_t m = printable_length(v, n), a = 0;
    if (m < 0)
        return -1;
    while (a < m && v[a] == ' ')
        a++;
    *start = a;
    return m - a;
}

static int same_text(const uint8_t *a, int64_t n, const char *b) {
    return n == (int64_t)strlen(b) && memcmp(a, b, (size_t)n) == 0;
}

/* The whole of headerscan._scan_fast after the open, for the usual file: the first read, the
 * 'DICM' prefix, the file meta inside that first read, the transfer syntax and the VR encoding
 * of the data set (as _scan_fast decides them), then the walk and the values. The texts of the
 * transfer syntax, Media Storage SOP Class and Instance UIDs (as _uid gives them) come first in
 * `text`, before the values; out[10] says whether the data set is implicit VR.
 * Returns DBW_DEFER, having decided nothing, for any other file (no prefix, a file meta past the
 * first read or unusual, deflate or big endian, UIDs that are not plain ASCII, a read error):
 * Python's own path then reads it, so its reasons and errors stay the reference's. Otherwise as
 * dbw_walk. c->first, first_base, first_len, pos and implicit are not used. */
int64_t dbw_scan(const DbwPlan *plan, DbwCall *c) {
    Walk walk, *w = &walk;
    start_walk(w, c);
    const int64_t size = c->size;
    int64_t got = read_at(w->fd, w->own, WINDOW, 0);
    if (got < 132 || memcmp(w->own + 128, "DICM", 4) != 0)
        return DBW_DEFER;
    w->buf = w->own;
    w->base = 0;
    w->len = got;
    const uint8_t *buf = w->own;
    /* the file meta group, as headerscan._read_meta (explicit VR little endian), kept to the first read */
    int64_t pos = 132, elements = 0, start[3] = {0, 0, 0}, length[3] = {-1, -1, -1};
    while (pos + 8 <= size) {
        if (pos + 12 > got)
            return DBW_DEFER;
        const uint8_t *p = buf + pos;
        if (p[0] != 2 || p[1] != 0) /* group 0002 ends the meta */
            break;
        int kind = vr_kind(p[4], p[5]);
        int64_t hlen, n;
        if (kind == 1) {
            n = u16(p + 6);
            hlen = 8;
        } else if (kind == 2) {
            if (u32(p + 8) == UNDEFINED)
                return DBW_DEFER;
            n = u32(p + 8);
            hlen = 12;
        } else {
            return DBW_DEFER;
        }
        if (pos + hlen + n > got)
            return DBW_DEFER;
        uint16_t elem = u16(p + 2);
        int which = elem == 0x0010 ? 0 : elem == 0x0002 ? 1 : elem == 0x0003 ? 2 : -1;
        if (which >= 0) { /* a later duplicate replaces an earlier one, as in the meta dict */
            start[which] = pos + hlen;
            length[which] = n;
        }
        elements++;
        pos += hlen + n;
    }
    if (!elements)
        return DBW_DEFER; /* _Broken("no file meta information after the DICM prefix") */
    int64_t from[3], count[3];
    for (int k = 0; k < 3; k++) {
        from[k] = 0;
        count[k] = 0;
        if (length[k] > 0 && (count[k] = uid_text(buf + start[k], length[k], &from[k])) < 0)
            return DBW_DEFER;
        from[k] += start[k];
    }
    const uint8_t *ts = buf + from[0];
    if (same_text(ts, count[0], "1.2.840.10008.1.2.1.99") || same_text(ts, count[0], "1.2.840.10008.1.2.2"))
        return DBW_DEFER; /* deflate, big endian: pydicom reads them */
    int implicit = same_text(ts, count[0], "1.2.840.10008.1.2");
    if (pos + 6 <= size) {
        if (pos + 6 > got)
            return DBW_DEFER;
        int found_implicit = !valid_vr(buf + pos + 4);
        if (!count[0]) {
            if (!found_implicit && u16(buf + pos) >= 1024)
                return DBW_DEFER; /* a big endian data set without file meta: pydicom */
            implicit = found_implicit;
        } else if (found_implicit != implicit) {
            implicit = found_implicit; /* as pydicom: the data over the meta */
        }
    }
    /* the three texts, then the walk (which reuses w->own: the texts are copied first) */
    if (c->text_cap < got + 2) {
        c->out[4] = 0;
        c->out[5] = 0;
        c->out[6] = got + 2;
        return DBW_TOO_SMALL;
    }
    int64_t prefix = 0;
    for (int k = 0; k < 3; k++) {
        if (k)
            c->text[prefix++] = 0;
        memcpy(c->text + prefix, buf + from[k], (size_t)count[k]);
        prefix += count[k];
    }
    c->out[10] = implicit;
    return walk_data_set(w, plan, c, pos, implicit, prefix);
}
