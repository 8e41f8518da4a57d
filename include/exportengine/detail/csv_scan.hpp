// exportengine/detail/csv_scan.hpp — the byte scans behind the CSV writer's
// fast path. Private: not part of the API.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace exportengine::detail {

/// Bytes the scan may read past the end of a field. Buffers handed to
/// `has_special_padded` must have this many readable bytes after the field.
inline constexpr std::size_t scan_padding = 16;

/// True when `p[0..n)` holds `delim`, `"`, CR or LF, i.e. the field must be
/// quoted. Reads whole 16-byte blocks, so up to `scan_padding - 1` bytes
/// after `p + n` must be readable (the writer scans its own padded buffer);
/// bits past `n` are masked off and never affect the result.
inline bool has_special_padded(const char* p, std::size_t n, char delim) noexcept
{
#if defined(__SSE2__)
    const __m128i vd = _mm_set1_epi8(delim);
    const __m128i vq = _mm_set1_epi8('"');
    const __m128i vr = _mm_set1_epi8('\r');
    const __m128i vn = _mm_set1_epi8('\n');
    for (std::size_t i = 0; i < n; i += 16) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
        const __m128i hit = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(x, vd), _mm_cmpeq_epi8(x, vq)),
            _mm_or_si128(_mm_cmpeq_epi8(x, vr), _mm_cmpeq_epi8(x, vn)));
        unsigned bits = static_cast<unsigned>(_mm_movemask_epi8(hit));
        if (n - i < 16)
            bits &= (1u << (n - i)) - 1u;
        if (bits != 0)
            return true;
    }
    return false;
#else
    for (std::size_t i = 0; i < n; ++i) {
        const char c = p[i];
        if (c == delim || c == '"' || c == '\r' || c == '\n')
            return true;
    }
    return false;
#endif
}

/// The first bytes that make a spreadsheet read a cell as a formula
/// (SPEC §4): `=`, `+`, `-`, `@`, TAB, CR.
inline constexpr bool is_formula_trigger(unsigned char c) noexcept
{
    return c == '=' || c == '+' || c == '-' || c == '@' || c == '\t' || c == '\r';
}

/// Writes `unix_seconds` as `YYYY-MM-DDTHH:MM:SSZ` (exactly 20 bytes) into
/// `out`. Returns false, writing nothing, outside years 0000..9999.
bool format_utc_timestamp(char* out, std::int64_t unix_seconds) noexcept;

} // namespace exportengine::detail
