/* The data set walk of headerscan._scan_fast, in C (loaded through ctypes by nativewalk.py).
 *
 * Same rules as the Python walker (headerscan._walk, _skip_sequence, _encapsulated_length),
 * which stays the reference: the tests compare both on every file they have. The walk keeps
 * the value bytes of the requested elements, skips every other element by its length, stops at
 * the pixel data (unless a later tag is requested), and reports the first problem as an error code plus its numbers; the Python
 * side turns the code into the same _Fallback/_Broken message as the Python walker.
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

#define DBW_VERSION 1

/* return codes of dbw_walk (a count of records otherwise) */
#define DBW_ERROR (-1)     /* out[4..7]: error kind and its numbers a, b, c */
#define DBW_TOO_SMALL (-2) /* out[4]: records needed, out[5]: value bytes needed */

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

static int kept(uint32_t tag, uint16_t vr, const uint64_t *filter, const uint32_t *keep, int nkeep,
                const uint16_t *groups, int ngroups) {
    uint32_t bit = filter_bit(tag);
    if (vr != VR_SQ && (filter[bit >> 6] >> (bit & 63)) & 1) {
        int lo = 0, hi = nkeep;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (keep[mid] < tag)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < nkeep && keep[lo] == tag)
            return 1;
    }
    uint16_t group = (uint16_t)(tag >> 16), elem = (uint16_t)tag;
    if (elem < 0x10 || elem > 0xFF)
        return 0;
    for (int i = 0; i < ngroups; i++)
        if (groups[i] == group)
            return 1;
    return 0;
}

int dbw_version(void) { return DBW_VERSION; }

/* Walk the data set of the open file `fd` (`size` bytes) from `pos`.
 *
 * first/first_base/first_len: the window Python holds already (bytes at file offset first_base).
 * keep (sorted), private_groups, last_tag: headerscan._TagPlan's keep, private_groups, last_tag.
 * records: 5 columns of max_records int64, one row per kept element: tag, VR (its 2 bytes as a
 * little-endian number, 0 in implicit VR), value offset in the file, start and end of the value
 * in `values`, where the values follow one another.
 * out[0], out[1]: pixel data offset and length (-1 when none); out[2]: value bytes used;
 * out[4..7]: error kind and numbers (DBW_ERROR) or the sizes needed (DBW_TOO_SMALL).
 * Returns the count of records, DBW_ERROR or DBW_TOO_SMALL (the walk is complete and error-free
 * but the outputs are too small: call again with at least the sizes given). */
int64_t dbw_walk(int fd, int64_t size, const uint8_t *first, int64_t first_base, int64_t first_len, int64_t pos,
                 int implicit, const uint32_t *keep, int nkeep, const uint16_t *private_groups, int ngroups,
                 uint32_t last_tag, int64_t *records, int64_t max_records, uint8_t *values, int64_t values_cap,
                 int64_t *out) {
    Walk walk, *w = &walk;
    w->fd = fd;
    w->size = size;
    w->buf = first;
    w->base = first_base;
    w->len = first_len;
    w->info = out + 4;
    uint64_t filter[FILTER_WORDS] = {0};
    for (int i = 0; i < nkeep; i++) {
        uint32_t bit = filter_bit(keep[i]);
        filter[bit >> 6] |= (uint64_t)1 << (bit & 63);
    }
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
    if (overflow) {
        out[4] = count;
        out[5] = used;
        result = DBW_TOO_SMALL;
    } else {
        result = count;
    }
done:
    return result;
#undef FAIL
}
