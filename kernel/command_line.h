// The kernel command line: "key=value key=value ...", parsed once at start into a bounded table.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "status.h"

namespace kernel {

class CommandLine {
public:
    static constexpr size_t kArgsMax = 32;
    static constexpr size_t kBytesMax = 1024;

    // kInvalidArgument for a word without '=', an empty key, a repeated key, or too many words;
    // error_word() then names the offending word (for a one-line message).
    Status parse(const char* text);
    // The value of key, or nullptr when absent.
    const char* get(const char* key) const;
    // true and *out set when key is present and a decimal number; false otherwise.
    bool get_u64(const char* key, uint64_t* out) const;
    // true when key is present with value "1", "yes", "on" or "true".
    bool flag(const char* key) const;
    size_t count() const { return count_; }
    const char* key(size_t i) const { return keys_[i]; }
    const char* value(size_t i) const { return values_[i]; }
    const char* error_word() const { return error_word_; }

private:
    char text_[kBytesMax] = {};
    const char* keys_[kArgsMax] = {};
    const char* values_[kArgsMax] = {};
    size_t count_ = 0;
    const char* error_word_ = "";
};

bool string_equal(const char* a, const char* b);

}  // namespace kernel
