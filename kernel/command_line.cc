#include "command_line.h"

namespace kernel {

bool string_equal(const char* a, const char* b) {
    while (*a && *a == *b) ++a, ++b;
    return *a == *b;
}

Status CommandLine::parse(const char* text) {
    count_ = 0;
    error_word_ = "";
    size_t n = 0;
    while (text && text[n]) ++n;
    if (n >= kBytesMax) {
        error_word_ = "(command line longer than 1023 bytes)";
        return Status::kLimitReached;
    }
    for (size_t i = 0; i < n; ++i) text_[i] = (text[i] == '\t' || text[i] == '\n') ? ' ' : text[i];
    text_[n] = '\0';
    char* p = text_;
    while (*p) {
        while (*p == ' ') *p++ = '\0';
        if (!*p) break;
        char* word = p;
        while (*p && *p != ' ') ++p;
        if (*p) *p++ = '\0';
        char* eq = word;
        while (*eq && *eq != '=') ++eq;
        if (*eq != '=' || eq == word) {
            error_word_ = word;
            return Status::kInvalidArgument;
        }
        *eq = '\0';
        if (get(word)) {
            error_word_ = word;
            return Status::kInvalidArgument;
        }
        if (count_ == kArgsMax) {
            error_word_ = word;
            return Status::kLimitReached;
        }
        keys_[count_] = word;
        values_[count_] = eq + 1;
        ++count_;
    }
    return Status::kOk;
}

const char* CommandLine::get(const char* key) const {
    for (size_t i = 0; i < count_; ++i) {
        if (string_equal(keys_[i], key)) return values_[i];
    }
    return nullptr;
}

bool CommandLine::get_u64(const char* key, uint64_t* out) const {
    const char* v = get(key);
    if (!v || !*v) return false;
    uint64_t result = 0;
    for (; *v; ++v) {
        if (*v < '0' || *v > '9') return false;
        uint64_t digit = static_cast<uint64_t>(*v - '0');
        if (result > (UINT64_MAX - digit) / 10) return false;
        result = result * 10 + digit;
    }
    *out = result;
    return true;
}

bool CommandLine::flag(const char* key) const {
    const char* v = get(key);
    return v && (string_equal(v, "1") || string_equal(v, "yes") || string_equal(v, "on") ||
                 string_equal(v, "true"));
}

}  // namespace kernel
