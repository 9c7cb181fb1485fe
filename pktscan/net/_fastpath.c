/*
 * The prober's send loop in C: SYN cookies, IPv4 SYN frames patched from a
 * template, and sendmmsg on an AF_PACKET socket.
 *
 * Python keeps everything that happens once per batch: the target walk, the
 * route, the window of pending probes and the pacing. This module does what
 * happens once per SYN: against the benchmark lab, the cookie, the patch and
 * the send took 6.3 us per SYN in Python and 2.1 us here, most of it the
 * kernel's work (docs/benchmarks.md). The frames are byte for byte those
 * that pktscan.net.packet.PacketTemplate.fill writes, as
 * tests/net/test_fastpath.py checks. The receiver's side, accept_block,
 * reads whole blocks of the receive ring.
 *
 * The cookie is SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast
 * short-input PRF", 2012) of source, destination, source port and
 * destination port, keyed with the scan's 16-byte key. The sequence number
 * is the hash's low 32 bits.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_BATCH 512
#define MAX_FRAME 96
#define SEND_RETRIES 50
#define SEND_RETRY_NANOSECONDS 1000000L

static inline uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

#define SIPROUND                                                               \
    do {                                                                       \
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);              \
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                 \
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                 \
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);              \
    } while (0)

static uint64_t siphash24(const uint8_t key[16], const uint8_t *data, size_t len) {
    uint64_t k0 = load64(key), k1 = load64(key + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
    uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
    uint64_t v3 = k1 ^ 0x7465646279746573ULL;
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load64(data + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < len % 8; i++) last |= (uint64_t)data[whole + i] << (8 * i);
    v3 ^= last;
    SIPROUND;
    SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static PyObject *py_siphash24(PyObject *self, PyObject *args) {
    Py_buffer key, data;
    if (!PyArg_ParseTuple(args, "y*y*", &key, &data)) return NULL;
    PyObject *result = NULL;
    if (key.len != 16) {
        PyErr_Format(PyExc_ValueError, "SipHash key must be 16 bytes, not %zd", key.len);
    } else {
        result = PyLong_FromUnsignedLongLong(
            siphash24(key.buf, data.buf, (size_t)data.len));
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return result;
}

/* The constants of one IPv4 SYN template, as PacketTemplate computed them. */
typedef struct {
    const uint8_t *bytes;
    Py_ssize_t len;
    unsigned long ip_base, tcp_base;
    int ip_id, ip_checksum, tcp, timestamp;
    uint8_t source[4];
    unsigned source_port;
    const uint8_t *key;
    uint32_t tsval;
} Template;

static inline uint32_t fold(uint64_t total) {
    while (total >> 16) total = (total & 0xffff) + (total >> 16);
    return (uint32_t)total;
}

static inline void put16(uint8_t *p, uint32_t v) { p[0] = v >> 8; p[1] = v & 0xff; }

static inline void put32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24; p[1] = (v >> 16) & 0xff; p[2] = (v >> 8) & 0xff; p[3] = v & 0xff;
}

/* Write one SYN to `frame`, as PacketTemplate.fill does, the IP ID taken
 * from the cookie as the prober does. */
static void fill(const Template *t, uint8_t *frame, const uint8_t destination[4],
                 unsigned port) {
    uint8_t tuple[12];
    memcpy(tuple, t->source, 4);
    memcpy(tuple + 4, destination, 4);
    put16(tuple + 8, t->source_port);
    put16(tuple + 10, port);
    uint32_t sequence = (uint32_t)siphash24(t->key, tuple, sizeof tuple);
    uint32_t ip_id = sequence & 0xffff;

    memcpy(frame, t->bytes, (size_t)t->len);
    memcpy(frame + 12, t->source, 4);
    memcpy(frame + 16, destination, 4);
    uint64_t address_sum = ((uint32_t)t->source[0] << 8 | t->source[1]) +
                           ((uint32_t)t->source[2] << 8 | t->source[3]) +
                           ((uint32_t)destination[0] << 8 | destination[1]) +
                           ((uint32_t)destination[2] << 8 | destination[3]);
    put16(frame + t->ip_id, ip_id);
    put16(frame + t->ip_checksum, ~fold(t->ip_base + address_sum + ip_id) & 0xffff);

    uint8_t *tcp = frame + t->tcp;
    put16(tcp, t->source_port);
    put16(tcp + 2, port);
    put32(tcp + 4, sequence);
    uint64_t tcp_sum = t->tcp_base + address_sum + t->source_port + port +
                       (sequence >> 16) + (sequence & 0xffff);
    if (t->timestamp >= 0) {
        put32(frame + t->timestamp, t->tsval);
        tcp_sum += (t->tsval >> 16) + (t->tsval & 0xffff);
    }
    put16(tcp + 16, ~fold(tcp_sum) & 0xffff);
}

/* Parse the template arguments shared by fill_syn4 and send_syn4. */
static int parse_template(Template *t, Py_buffer *template, Py_buffer *source,
                          Py_buffer *key) {
    if (template->len > MAX_FRAME || template->len < 40) {
        PyErr_Format(PyExc_ValueError, "template of %zd bytes: must be 40 to %d",
                     template->len, MAX_FRAME);
        return -1;
    }
    if (source->len != 4) {
        PyErr_SetString(PyExc_ValueError, "source must be a packed IPv4 address");
        return -1;
    }
    if (key->len != 16) {
        PyErr_SetString(PyExc_ValueError, "cookie key must be 16 bytes");
        return -1;
    }
    int offsets[] = {t->ip_id, t->ip_checksum, t->tcp, t->timestamp};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        if (offsets[i] > template->len - 4 || (offsets[i] < 0 && i != 3)) {
            PyErr_Format(PyExc_ValueError, "template offset %d out of range",
                         offsets[i]);
            return -1;
        }
    }
    if (t->tcp + 20 > template->len) {
        PyErr_SetString(PyExc_ValueError, "template shorter than its TCP header");
        return -1;
    }
    t->bytes = template->buf;
    t->len = template->len;
    memcpy(t->source, source->buf, 4);
    t->key = key->buf;
    return 0;
}

/* Read targets[index] as a packed IPv4 address and a port. Returns 0 on
 * success, -1 with an exception set on a malformed item. */
static int target_at(PyObject *targets, Py_ssize_t index, const uint8_t **address,
                     unsigned *port) {
    PyObject *item = PyList_GET_ITEM(targets, index);
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
        PyErr_SetString(PyExc_TypeError, "targets must be (bytes, int) tuples");
        return -1;
    }
    PyObject *packed = PyTuple_GET_ITEM(item, 0);
    if (!PyBytes_Check(packed) || PyBytes_GET_SIZE(packed) != 4) {
        PyErr_SetString(PyExc_ValueError, "target address must be 4 packed bytes");
        return -1;
    }
    /* Only an exact int: a subclass or an object with __index__ could run
     * Python code here, which could change the list under the loop. */
    PyObject *number = PyTuple_GET_ITEM(item, 1);
    if (!PyLong_CheckExact(number)) {
        PyErr_SetString(PyExc_TypeError, "target port must be an int");
        return -1;
    }
    long value = PyLong_AsLong(number);
    if (value == -1 && PyErr_Occurred()) return -1;
    if (value < 0 || value > 65535) {
        PyErr_Format(PyExc_ValueError, "target port %ld out of range", value);
        return -1;
    }
    *address = (const uint8_t *)PyBytes_AS_STRING(packed);
    *port = (unsigned)value;
    return 0;
}

static inline uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#define TEMPLATE_FORMAT "y*kkiiiiy*Iy*I"
#define TEMPLATE_ARGS(t, template, source, key)                                \
    &template, &(t).ip_base, &(t).tcp_base, &(t).ip_id, &(t).ip_checksum,      \
        &(t).tcp, &(t).timestamp, &source, &(t).source_port, &key, &(t).tsval

static PyObject *py_fill_syn4(PyObject *self, PyObject *args) {
    Template t;
    Py_buffer template, source, key;
    PyObject *targets;
    if (!PyArg_ParseTuple(args, TEMPLATE_FORMAT "O!",
                          TEMPLATE_ARGS(t, template, source, key), &PyList_Type,
                          &targets))
        return NULL;
    PyObject *result = NULL;
    if (parse_template(&t, &template, &source, &key) == 0) {
        Py_ssize_t count = PyList_GET_SIZE(targets);
        result = PyBytes_FromStringAndSize(NULL, count * t.len);
        for (Py_ssize_t i = 0; result != NULL && i < count; i++) {
            const uint8_t *address;
            unsigned port;
            if (target_at(targets, i, &address, &port) < 0) {
                Py_CLEAR(result);
                break;
            }
            fill(&t, (uint8_t *)PyBytes_AS_STRING(result) + i * t.len, address, port);
        }
    }
    PyBuffer_Release(&template);
    PyBuffer_Release(&source);
    PyBuffer_Release(&key);
    return result;
}

/* Send `count` frames with sendmmsg, retrying while the device queue is
 * full. Returns the number sent; counts the others in *dropped and leaves
 * the last error in *error. Runs without the GIL. */
static int send_frames(int fd, struct mmsghdr *messages, int count, int *dropped,
                       int *error) {
    int next = 0, sent = 0, retries = 0;
    while (next < count) {
        int n = sendmmsg(fd, messages + next, (unsigned)(count - next), 0);
        if (n > 0) {
            next += n;
            sent += n;
            retries = 0;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == ENOBUFS || errno == EAGAIN) && retries < SEND_RETRIES) {
            struct timespec pause = {0, SEND_RETRY_NANOSECONDS};
            nanosleep(&pause, NULL);
            retries++;
            continue;
        }
        /* The first remaining frame failed: count it dropped and go on. */
        *error = n < 0 ? errno : EIO;
        *dropped += 1;
        next++;
        retries = 0;
    }
    return sent;
}

static PyObject *py_send_syn4(PyObject *self, PyObject *args) {
    Template t;
    Py_buffer template, source, key, hop;
    PyObject *targets;
    int fd, ifindex;
    if (!PyArg_ParseTuple(args, TEMPLATE_FORMAT "O!iiy*",
                          TEMPLATE_ARGS(t, template, source, key), &PyList_Type,
                          &targets, &fd, &ifindex, &hop))
        return NULL;
    PyObject *result = NULL;
    if (parse_template(&t, &template, &source, &key) < 0) goto done;
    if (hop.len != ETH_ALEN) {
        PyErr_SetString(PyExc_ValueError, "hop must be a 6-byte link-layer address");
        goto done;
    }
    Py_ssize_t total = PyList_GET_SIZE(targets);

    struct sockaddr_ll link;
    memset(&link, 0, sizeof link);
    link.sll_family = AF_PACKET;
    link.sll_protocol = htons(ETH_P_IP);
    link.sll_ifindex = ifindex;
    link.sll_halen = ETH_ALEN;
    memcpy(link.sll_addr, hop.buf, ETH_ALEN);

    uint8_t addresses[MAX_BATCH][4];
    unsigned ports[MAX_BATCH];
    int count = 0;
    while (count < total && count < MAX_BATCH) {
        const uint8_t *address;
        unsigned port;
        if (target_at(targets, count, &address, &port) < 0) goto done;
        memcpy(addresses[count], address, 4);
        ports[count] = port;
        count++;
    }
    /* The frames are written and sent without the GIL, so that a thread
     * that calls this overlaps the kernel's work with Python elsewhere. */
    uint8_t frames[MAX_BATCH][MAX_FRAME];
    struct mmsghdr messages[MAX_BATCH];
    struct iovec vectors[MAX_BATCH];
    int dropped = 0, error = 0, sent = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < count; i++) {
        fill(&t, frames[i], addresses[i], ports[i]);
        vectors[i].iov_base = frames[i];
        vectors[i].iov_len = (size_t)t.len;
        memset(&messages[i], 0, sizeof messages[i]);
        messages[i].msg_hdr.msg_name = &link;
        messages[i].msg_hdr.msg_namelen = sizeof link;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    if (count > 0) sent = send_frames(fd, messages, count, &dropped, &error);
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("iii", sent, dropped, error);
done:
    PyBuffer_Release(&template);
    PyBuffer_Release(&source);
    PyBuffer_Release(&key);
    PyBuffer_Release(&hop);
    return result;
}

/* ---- The receiver's side: one TPACKET_V3 block at a time. ---- */

#define TP_STATUS_USER 1
#define ARPHRD_ETHER_TYPE 1
#define TCP_FIN_FLAG 0x01
#define TCP_SYN_FLAG 0x02
#define TCP_RST_FLAG 0x04
#define TCP_ACK_FLAG 0x10
/* The record that receiver.py's RECORD struct reads: "=BBBBBxH16sIdd". */
#define RECORD_SIZE 44
#define KIND_RESPONSE 0

static inline uint32_t get32le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline uint16_t get16le(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* The TSecr of a timestamp option, as receiver.py's parse reads it: the
 * first option of kind 8 within the header, when its length is 10. */
static int timestamp_echo(const uint8_t *tcp, size_t header, uint32_t *echo) {
    size_t offset = 20;
    while (offset < header) {
        uint8_t kind = tcp[offset];
        if (kind == 0) return 0;
        if (kind == 1) {
            offset++;
            continue;
        }
        if (offset + 1 >= header) return 0;
        uint8_t length = tcp[offset + 1];
        if (length < 2) return 0;
        if (kind == 8) {
            if (offset + length > header || length != 10) return 0;
            *echo = be32(tcp + offset + 6);
            return 1;
        }
        offset += length;
    }
    return 0;
}

static uint64_t ip_id_state;

static inline uint16_t next_ip_id(void) {
    /* xorshift64: the IP ID only needs to differ between packets. */
    ip_id_state ^= ip_id_state << 13;
    ip_id_state ^= ip_id_state >> 7;
    ip_id_state ^= ip_id_state << 17;
    return (uint16_t)ip_id_state;
}

/* Write an RST from the template, as PacketTemplate.fill does for the
 * receiver's "R" template (no options, no timestamp). */
static void fill_reset(const uint8_t *template, Py_ssize_t len, unsigned long ip_base,
                       unsigned long tcp_base, uint8_t *frame, const uint8_t *source,
                       const uint8_t *destination, unsigned source_port,
                       unsigned destination_port, uint32_t sequence) {
    memcpy(frame, template, (size_t)len);
    memcpy(frame + 12, source, 4);
    memcpy(frame + 16, destination, 4);
    uint64_t address_sum = get16(source) + get16(source + 2) + get16(destination) +
                           get16(destination + 2);
    uint16_t ip_id = next_ip_id();
    put16(frame + 4, ip_id);
    put16(frame + 10, ~fold(ip_base + address_sum + ip_id) & 0xffff);
    put16(frame + 20, source_port);
    put16(frame + 22, destination_port);
    put32(frame + 24, sequence);
    uint64_t tcp_sum = tcp_base + address_sum + source_port + destination_port +
                       (sequence >> 16) + (sequence & 0xffff);
    put16(frame + 36, ~fold(tcp_sum) & 0xffff);
}

static PyObject *py_accept_block(PyObject *self, PyObject *args) {
    Py_buffer ring, key, reset;
    Py_ssize_t base, block_bytes;
    unsigned int source_port;
    unsigned long ip_base, tcp_base;
    int fd;
    double monotonic, wall;
    if (!PyArg_ParseTuple(args, "w*nnIy*y*kkidd", &ring, &base, &block_bytes,
                          &source_port, &key, &reset, &ip_base, &tcp_base, &fd,
                          &monotonic, &wall))
        return NULL;
    PyObject *records = NULL, *others = NULL, *result = NULL;
    if (key.len != 16 || reset.len != 40 || base < 0 || block_bytes < 48 ||
        base > ring.len - block_bytes) {
        PyErr_SetString(PyExc_ValueError, "bad block, key or RST template");
        goto done;
    }
    if (ip_id_state == 0) ip_id_state = (uint64_t)time(NULL) * 2654435761u + 1;
    const uint8_t *block = (const uint8_t *)ring.buf + base;
    uint32_t count = get32le(block + 12), offset = get32le(block + 16);
    others = PyList_New(0);
    if (others == NULL) goto done;
    /* Sized for every packet; trimmed at the end. */
    if (count > (uint32_t)(block_bytes / 48)) count = (uint32_t)(block_bytes / 48);
    records = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)count * RECORD_SIZE);
    if (records == NULL) goto done;
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(records);
    Py_ssize_t written = 0;
    long invalid = 0, resets = 0, send_errors = 0;
    int last_error = 0;

    uint8_t frames[MAX_BATCH][40];
    struct sockaddr_ll links[MAX_BATCH];
    struct mmsghdr messages[MAX_BATCH];
    struct iovec vectors[MAX_BATCH];
    int pending = 0;

    size_t position = offset;
    for (uint32_t n = 0; n < count; n++) {
        if (position + 72 > (size_t)block_bytes) break;
        const uint8_t *header = block + position;
        uint32_t next = get32le(header), snaplen = get32le(header + 12);
        uint16_t net = get16le(header + 26);
        int ifindex = (int)get32le(header + 52);
        uint16_t hatype = get16le(header + 56);
        uint8_t packet_type = header[58], halen = header[59];
        const uint8_t *hop = header + 60;
        size_t start = position + net;
        if (packet_type == 4 /* PACKET_OUTGOING */ || start + snaplen > (size_t)block_bytes)
            goto advance;
        const uint8_t *ip = block + start;
        size_t length = snaplen;
        if (length < 20 || ip[0] >> 4 != 4 || hatype != ARPHRD_ETHER_TYPE || halen != 6) {
            /* IPv6, loopback and other links: receiver.py's own path. */
            double arrived = (double)get32le(header + 4) + get32le(header + 8) * 1e-9;
            PyObject *item = Py_BuildValue("(y#iy#d)", ip, (Py_ssize_t)length, ifindex,
                                           hop, (Py_ssize_t)(halen <= 8 ? halen : 8),
                                           arrived);
            if (item == NULL || PyList_Append(others, item) < 0) {
                Py_XDECREF(item);
                goto done;
            }
            Py_DECREF(item);
            goto advance;
        }
        size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
        if (ihl < 20 || ip[9] != 6 || (get16(ip + 6) & 0x1fff) != 0 || length < ihl + 20)
            goto advance;
        const uint8_t *tcp = ip + ihl;
        unsigned their_port = get16(tcp), our_port = get16(tcp + 2);
        if (our_port != source_port) goto advance;
        uint8_t flags = tcp[13];
        uint32_t acknowledgment = be32(tcp + 8);
        if (!(flags & TCP_ACK_FLAG)) {
            invalid++;
            goto advance;
        }
        uint8_t tuple[12];
        memcpy(tuple, ip + 16, 4);
        memcpy(tuple + 4, ip + 12, 4);
        put16(tuple + 8, our_port);
        put16(tuple + 10, their_port);
        uint32_t expected = (uint32_t)siphash24(key.buf, tuple, sizeof tuple);
        if (acknowledgment != expected + 1) {
            invalid++;
            goto advance;
        }
        /* With RST set, the segment resets whatever else it carries, as
         * Linux's TCP treats it: the port is closed, and needs no RST. */
        int syn_ack = (flags & (TCP_SYN_FLAG | TCP_ACK_FLAG | TCP_RST_FLAG)) ==
                      (TCP_SYN_FLAG | TCP_ACK_FLAG);
        if (!syn_ack && !(flags & TCP_RST_FLAG)) goto advance;
        /* No RST to a multicast or broadcast source: a hostile target
         * could make us send frames to the whole link. */
        if (syn_ack && !(hop[0] & 1)) {
            fill_reset(reset.buf, reset.len, ip_base, tcp_base, frames[pending], ip + 16,
                       ip + 12, our_port, their_port, acknowledgment);
            struct sockaddr_ll *link = &links[pending];
            memset(link, 0, sizeof *link);
            link->sll_family = AF_PACKET;
            link->sll_protocol = htons(ETH_P_IP);
            link->sll_ifindex = ifindex;
            link->sll_halen = ETH_ALEN;
            memcpy(link->sll_addr, hop, ETH_ALEN);
            vectors[pending].iov_base = frames[pending];
            vectors[pending].iov_len = 40;
            memset(&messages[pending], 0, sizeof messages[pending]);
            messages[pending].msg_hdr.msg_name = link;
            messages[pending].msg_hdr.msg_namelen = sizeof *link;
            messages[pending].msg_hdr.msg_iov = &vectors[pending];
            messages[pending].msg_hdr.msg_iovlen = 1;
            pending++;
            if (pending == MAX_BATCH) {
                int dropped = 0;
                resets += send_frames(fd, messages, pending, &dropped, &last_error);
                send_errors += dropped;
                pending = 0;
            }
        }
        uint32_t echo = 0;
        size_t tcp_header = (size_t)(tcp[12] >> 4) * 4;
        int has_echo = length >= ihl + tcp_header && tcp_header >= 20 &&
                       timestamp_echo(tcp, tcp_header, &echo);
        uint8_t *record = out + written * RECORD_SIZE;
        memset(record, 0, RECORD_SIZE);
        record[0] = KIND_RESPONSE;
        record[1] = 4;
        record[2] = flags;
        record[3] = (uint8_t)has_echo;
        record[4] = ip[8];
        memcpy(record + 6, &(uint16_t){(uint16_t)their_port}, 2);
        memcpy(record + 8, ip + 12, 4);
        memcpy(record + 24, &echo, 4);
        /* The kernel's time of arrival (CLOCK_REALTIME), carried over to
         * the monotonic clock through the pair of times read at the call.
         * A block without times (tests build such) keeps the call's. */
        double arrived = (double)get32le(header + 4) + get32le(header + 8) * 1e-9;
        double packet_wall = arrived > 0 ? arrived : wall;
        double packet_monotonic = monotonic - (wall - packet_wall);
        memcpy(record + 28, &packet_monotonic, 8);
        memcpy(record + 36, &packet_wall, 8);
        written++;
    advance:
        if (next == 0) break;
        position += next;
    }
    if (pending > 0) {
        int dropped = 0;
        resets += send_frames(fd, messages, pending, &dropped, &last_error);
        send_errors += dropped;
    }
    if (_PyBytes_Resize(&records, written * RECORD_SIZE) < 0) goto done;
    result = Py_BuildValue("(OOlli)", records, others, invalid, resets, last_error);
done:
    Py_XDECREF(records);
    Py_XDECREF(others);
    PyBuffer_Release(&ring);
    PyBuffer_Release(&key);
    PyBuffer_Release(&reset);
    return result;
}

static PyObject *py_span_run(PyObject *self, PyObject *args) {
    PyObject *targets;
    Py_ssize_t start, limit;
    unsigned int network, mask;
    if (!PyArg_ParseTuple(args, "O!nIIn", &PyList_Type, &targets, &start, &network,
                          &mask, &limit))
        return NULL;
    Py_ssize_t total = PyList_GET_SIZE(targets), index = start;
    if (start < 0 || start > total) {
        PyErr_Format(PyExc_IndexError, "start %zd outside the %zd targets", start, total);
        return NULL;
    }
    while (index < total && index - start < limit) {
        PyObject *item = PyList_GET_ITEM(targets, index);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) break;
        PyObject *packed = PyTuple_GET_ITEM(item, 0);
        if (!PyBytes_Check(packed) || PyBytes_GET_SIZE(packed) != 4) break;
        if ((be32((const uint8_t *)PyBytes_AS_STRING(packed)) & mask) != network) break;
        index++;
    }
    return PyLong_FromSsize_t(index - start);
}

static PyMethodDef methods[] = {
    {"span_run", py_span_run, METH_VARARGS,
     "span_run(targets, start, network, mask, limit) -> int: how many targets\n"
     "from start on are IPv4 addresses inside network/mask, at most limit."},
    {"accept_block", py_accept_block, METH_VARARGS,
     "accept_block(ring, base, block_bytes, source_port, key, reset_template,\n"
     "ip_base, tcp_base, fd, monotonic, wall) -> (records, others, invalid,\n"
     "resets, errno): read one TPACKET_V3 block; see receiver.py."},
    {"siphash24", py_siphash24, METH_VARARGS,
     "siphash24(key, data) -> int: SipHash-2-4 of data under a 16-byte key."},
    {"fill_syn4", py_fill_syn4, METH_VARARGS,
     "fill_syn4(template..., targets) -> bytes: the SYN frames, concatenated."},
    {"send_syn4", py_send_syn4, METH_VARARGS,
     "send_syn4(template..., targets, fd, ifindex, hop) -> (sent, dropped,\n"
     "errno): send SYNs to the first MAX_BATCH (512) targets."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pktscan.net._fastpath",
    "The prober's per-SYN work in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "MAX_BATCH", MAX_BATCH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
