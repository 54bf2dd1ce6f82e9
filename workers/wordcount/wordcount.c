/* wordcount: the two bolts of the word-count topology as applications of
 * one C plugin: "split" cuts sentences into lowercase words, "count" keeps
 * a running count per word. */

/*
 * One file, several applications. The loader asks a plugin for the name
 * the user gave (--app NAME loads NAME.so and calls shoal_plugin_register
 * with NAME). This plugin answers:
 *   "wordcount"  registers both "split" and "count" (--app wordcount);
 *   "split"      registers "split" only   } for a link split.so ->
 * wordcount.so, "count"      registers "count" only   } or a program calling
 * it itself; anything else: SHOAL_ENOAPP.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "shoal.h"

int shoal_plugin_register(shoal_node_t *node, const char *name);

/* ---- split: UTF-8 sentences into lowercase words ------------------------
 */

/* Decodes one UTF-8 sequence at s[0, len) into *cp. Returns its length;
 * an invalid byte is consumed alone as U+FFFD (a separator). */
static size_t wc_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    size_t n;
    uint32_t c;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        c = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        c = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        c = s[0] & 0x07;
    } else {
        *cp = 0xfffd;
        return 1;
    }
    if (n > len) {
        *cp = 0xfffd;
        return 1;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *cp = 0xfffd;
            return 1;
        }
        c = (c << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past U+10FFFF. */
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff)) {
        *cp = 0xfffd;
        return 1;
    }
    *cp = c;
    return n;
}

static size_t wc_encode(uint32_t c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xc0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xe0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    out[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* Letters: ASCII letters, and every other code point outside the blocks
 * of punctuation, symbols, digits and spaces listed here. Good enough to
 * keep "élan", "straße" and "東京" whole without a Unicode database. */
static bool wc_is_letter(uint32_t c)
{
    static const uint32_t not_letters[][2] = {
        {0x0080, 0x00a9},   {0x00ab, 0x00b4}, {0x00b6, 0x00b9},
        {0x00bb, 0x00bf},   {0x00d7, 0x00d7}, {0x00f7, 0x00f7},
        {0x2000, 0x2bff}, /* punctuation, symbols, arrows, maths */
        {0x3000, 0x303f}, /* CJK punctuation */
        {0xfe10, 0xfe1f},   {0xfe30, 0xfe4f}, {0xff00, 0xff20},
        {0xff3b, 0xff40},   {0xff5b, 0xff65}, {0xfffd, 0xfffd},
        {0x1f000, 0x1faff}, /* emoji and pictographs */
    };

    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    for (size_t i = 0; i < sizeof(not_letters) / sizeof(not_letters[0]); i++)
        if (c >= not_letters[i][0] && c <= not_letters[i][1])
            return false;
    return true;
}

/* Lowercase for ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic;
 * other scripts are kept as they are. */
static uint32_t wc_lower(uint32_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c + 0x20;
    if (c < 0xc0)
        return c;
    if (c <= 0xde && c != 0xd7)
        return c + 0x20;
    if (c >= 0x100 && c <= 0x137)
        return c | 1;
    if (c >= 0x139 && c <= 0x148)
        return (c & 1) ? c + 1 : c;
    if (c >= 0x14a && c <= 0x177)
        return c | 1;
    if (c == 0x178)
        return 0xff;
    if (c >= 0x179 && c <= 0x17e)
        return (c & 1) ? c + 1 : c;
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2)
        return c + 0x20;
    if (c == 0x386)
        return 0x3ac;
    if (c >= 0x388 && c <= 0x38a)
        return c + 0x25;
    if (c == 0x38c)
        return 0x3cc;
    if (c == 0x38e || c == 0x38f)
        return c + 0x3f;
    if (c >= 0x410 && c <= 0x42f)
        return c + 0x20;
    if (c >= 0x400 && c <= 0x40f)
        return c + 0x50;
    return c;
}

static void wc_split(shoal_call_t *call, void *data)
{
    const cJSON *args = shoal_call_args_json(call);
    const cJSON *item =
        cJSON_IsObject(args)
            ? cJSON_GetObjectItemCaseSensitive(args, "sentence")
            : args;
    const unsigned char *s;
    cJSON *words;
    char *word;
    size_t len, wlen = 0;

    (void)data;
    if (!cJSON_IsString(item)) {
        shoal_call_fail(call, SHOAL_EBADTYPE,
                        "split takes {\"sentence\": \"...\"}");
        return;
    }
    s = (const unsigned char *)item->valuestring;
    len = strlen(item->valuestring);
    /* Lowercasing never makes a character longer than 4 bytes. */
    word = malloc(len + 4);
    words = cJSON_CreateArray();
    if (word == NULL || words == NULL) {
        free(word);
        cJSON_Delete(words);
        shoal_call_fail(call, SHOAL_ENOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i <= len;) {
        uint32_t c = 0;
        size_t n = i < len ? wc_decode(s + i, len - i, &c) : 1;
        if (i < len && wc_is_letter(c)) {
            wlen += wc_encode(wc_lower(c), word + wlen);
        } else if (wlen > 0) {
            word[wlen] = '\0';
            cJSON_AddItemToArray(words, cJSON_CreateString(word));
            wlen = 0;
        }
        i += n;
    }
    free(word);
    shoal_call_reply_cjson(call, words);
    cJSON_Delete(words);
}

static const shoal_action_t wc_split_actions[] = {
    {"split", wc_split},
};

/* ---- count: running counts in a hash map --------------------------------
 */

typedef struct {
    char *word; /* NULL: free slot */
    uint64_t count;
} wc_entry_t;

typedef struct {
    wc_entry_t *slots;
    size_t cap; /* a power of two, or 0 */
    size_t used;
    uint64_t bad_tells;
} wc_counts_t;

static uint64_t wc_hash(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static wc_entry_t *wc_slot(wc_entry_t *slots, size_t cap, const char *word,
                           size_t len)
{
    size_t i = (size_t)wc_hash(word, len) & (cap - 1);

    while (slots[i].word != NULL && (strlen(slots[i].word) != len ||
                                     memcmp(slots[i].word, word, len) != 0))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int wc_grow(wc_counts_t *wc)
{
    size_t cap = wc->cap ? wc->cap * 2 : 64;
    wc_entry_t *slots = calloc(cap, sizeof(*slots));

    if (slots == NULL)
        return SHOAL_ENOMEM;
    for (size_t i = 0; i < wc->cap; i++)
        if (wc->slots[i].word != NULL)
            *wc_slot(slots, cap, wc->slots[i].word,
                     strlen(wc->slots[i].word)) = wc->slots[i];
    free(wc->slots);
    wc->slots = slots;
    wc->cap = cap;
    return 0;
}

/* Adds one to word's count. Returns the new count, or 0 out of memory. */
static uint64_t wc_add(wc_counts_t *wc, const char *word)
{
    size_t len = strlen(word);
    wc_entry_t *e;

    /* Kept at most 3/4 full: probes stay short. */
    if ((wc->used + 1) * 4 > wc->cap * 3 && wc_grow(wc) != 0)
        return 0;
    e = wc_slot(wc->slots, wc->cap, word, len);
    if (e->word == NULL) {
        e->word = strdup(word);
        if (e->word == NULL)
            return 0;
        wc->used++;
    }
    return ++e->count;
}

/* The word of a count message: {"word": w} or just w. */
static const char *wc_word(const cJSON *json)
{
    if (cJSON_IsObject(json))
        json = cJSON_GetObjectItemCaseSensitive(json, "word");
    return cJSON_IsString(json) && json->valuestring[0] != '\0'
               ? json->valuestring
               : NULL;
}

static void wc_count_tell(shoal_node_t *node, shoal_conn_t *from,
                          const shoal_payload_t *msg, void *data)
{
    wc_counts_t *wc = data;
    cJSON *json = shoal_payload_to_cjson(msg);
    const char *word = wc_word(json);

    (void)node;
    (void)from;
    /* A tell has no answer to carry an error: the first bad one is
     * reported, all are counted. */
    if (word == NULL || wc_add(wc, word) == 0) {
        if (wc->bad_tells++ == 0)
            fprintf(stderr, "shoal: application 'count': a tell that is "
                            "not {\"word\": \"...\"}, or out of memory; "
                            "dropped\n");
    }
    cJSON_Delete(json);
}

static void wc_count(shoal_call_t *call, void *data)
{
    const char *word = wc_word(shoal_call_args_json(call));
    char text[32];
    uint64_t count;

    if (word == NULL) {
        shoal_call_fail(call, SHOAL_EBADTYPE,
                        "count takes {\"word\": \"...\"}");
        return;
    }
    count = wc_add(data, word);
    if (count == 0) {
        shoal_call_fail(call, SHOAL_ENOMEM, "out of memory");
        return;
    }
    snprintf(text, sizeof(text), "%llu", (unsigned long long)count);
    shoal_call_reply_json(call, text);
}

/* Most frequent first, then by word. */
static int wc_compare(const void *a, const void *b)
{
    const wc_entry_t *x = *(const wc_entry_t *const *)a;
    const wc_entry_t *y = *(const wc_entry_t *const *)b;

    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->word, y->word);
}

static void wc_top(shoal_call_t *call, void *data)
{
    wc_counts_t *wc = data;
    const cJSON *args = shoal_call_args_json(call);
    const cJSON *item = cJSON_IsObject(args)
                            ? cJSON_GetObjectItemCaseSensitive(args, "n")
                            : args;
    wc_entry_t **sorted;
    cJSON *top;
    size_t n = 0, want;

    if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0) ||
        item->valuedouble > 1e9 ||
        (double)(size_t)item->valuedouble != item->valuedouble) {
        shoal_call_fail(call, SHOAL_EBADTYPE,
                        "top takes {\"n\": N}: a non-negative integer");
        return;
    }
    want = (size_t)item->valuedouble;
    sorted = malloc((wc->used ? wc->used : 1) * sizeof(*sorted));
    top = cJSON_CreateArray();
    if (sorted == NULL || top == NULL) {
        free(sorted);
        cJSON_Delete(top);
        shoal_call_fail(call, SHOAL_ENOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < wc->cap; i++)
        if (wc->slots[i].word != NULL)
            sorted[n++] = &wc->slots[i];
    qsort(sorted, n, sizeof(*sorted), wc_compare);
    for (size_t i = 0; i < n && i < want; i++) {
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(sorted[i]->word));
        cJSON_AddItemToArray(pair,
                             cJSON_CreateNumber((double)sorted[i]->count));
        cJSON_AddItemToArray(top, pair);
    }
    free(sorted);
    shoal_call_reply_cjson(call, top);
    cJSON_Delete(top);
}

static void wc_count_free(void *data)
{
    wc_counts_t *wc = data;

    for (size_t i = 0; i < wc->cap; i++)
        free(wc->slots[i].word);
    free(wc->slots);
    free(wc);
}

static const shoal_action_t wc_count_actions[] = {
    {"count", wc_count},
    {"top", wc_top},
};

/* ---- registration ------------------------------------------------------
 */

static int wc_add_split(shoal_node_t *node)
{
    shoal_app_opts_t opts;

    memset(&opts, 0, sizeof(opts));
    opts.name = "split";
    opts.description = "{\"summary\":\"split {sentence} gives its words, "
                       "lowercase, cut at every non-letter\"}";
    opts.actions = wc_split_actions;
    opts.n_actions = sizeof(wc_split_actions) / sizeof(wc_split_actions[0]);
    return shoal_node_add_app(node, &opts);
}

static int wc_add_count(shoal_node_t *node)
{
    shoal_app_opts_t opts;
    int err;

    memset(&opts, 0, sizeof(opts));
    opts.name = "count";
    opts.description = "{\"summary\":\"a tell {word} or a call count "
                       "{word} adds one to the word's count (the call "
                       "answers it); top {n} gives the n most frequent "
                       "[word, count]\"}";
    opts.actions = wc_count_actions;
    opts.n_actions = sizeof(wc_count_actions) / sizeof(wc_count_actions[0]);
    opts.on_tell = wc_count_tell;
    opts.on_close = wc_count_free;
    opts.data = calloc(1, sizeof(wc_counts_t));
    if (opts.data == NULL)
        return SHOAL_ENOMEM;
    err = shoal_node_add_app(node, &opts);
    if (err)
        wc_count_free(opts.data);
    return err;
}

int shoal_plugin_register(shoal_node_t *node, const char *name)
{
    int err;

    if (strcmp(name, "split") == 0)
        return wc_add_split(node);
    if (strcmp(name, "count") == 0)
        return wc_add_count(node);
    if (strcmp(name, "wordcount") != 0)
        return SHOAL_ENOAPP;
    err = wc_add_split(node);
    if (err)
        return err;
    err = wc_add_count(node);
    if (err)
        shoal_node_remove_app(node, "split");
    return err;
}
