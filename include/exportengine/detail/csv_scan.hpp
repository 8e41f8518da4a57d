// exportengine/detail/csv_scan.hpp — the byte scans behind the CSV writer's
// fast path. Private: not part of the API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace exportengine::detail {

/// Scans `src[0..n)` for `delim`, `"`, CR or LF (a field that must be
/// quoted) and, with `Copy`, copies it to `dst` on the way.
///
/// One pass, 16 bytes at a time, with loads that never leave `src[0..n)`
/// (short fields are read as two overlapping 8- or 4-byte words), so it is
/// safe on any input and clean under the sanitizers. Copying with the same
/// registers that were scanned also avoids a store-to-load forwarding stall
/// that scanning a fresh memcpy would hit. Writes exactly `dst[0..n)`.
template <bool Copy>
inline bool scan_impl(char* dst, const char* src, std::size_t n, char delim) noexcept
{
#if defined(__SSE2__)
    const __m128i vd = _mm_set1_epi8(delim);
    const __m128i vq = _mm_set1_epi8('"');
    const __m128i vr = _mm_set1_epi8('\r');
    const __m128i vn = _mm_set1_epi8('\n');
    const auto hits = [&](__m128i x) {
        return _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, vd), _mm_cmpeq_epi8(x, vq)),
                            _mm_or_si128(_mm_cmpeq_epi8(x, vr), _mm_cmpeq_epi8(x, vn)));
    };
    if (n >= 16) {
        __m128i acc = _mm_setzero_si128();
        std::size_t i = 0;
        for (; i + 16 <= n; i += 16) {
            const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
            if constexpr (Copy)
                _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), x);
            acc = _mm_or_si128(acc, hits(x));
        }
        if (i < n) { // the tail, as the last 16 bytes (overlapping the loop's)
            const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + n - 16));
            if constexpr (Copy)
                _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + n - 16), x);
            acc = _mm_or_si128(acc, hits(x));
        }
        return _mm_movemask_epi8(acc) != 0;
    }
    if (n >= 8) {
        std::uint64_t a, b;
        std::memcpy(&a, src, 8);
        std::memcpy(&b, src + n - 8, 8);
        if constexpr (Copy) {
            std::memcpy(dst, &a, 8);
            std::memcpy(dst + n - 8, &b, 8);
        }
        const __m128i x = _mm_set_epi64x(static_cast<long long>(b), static_cast<long long>(a));
        return _mm_movemask_epi8(hits(x)) != 0;
    }
    if (n >= 4) {
        std::uint32_t a, b;
        std::memcpy(&a, src, 4);
        std::memcpy(&b, src + n - 4, 4);
        if constexpr (Copy) {
            std::memcpy(dst, &a, 4);
            std::memcpy(dst + n - 4, &b, 4);
        }
        // The zero lanes are harmless: NUL is never a delimiter.
        const __m128i x = _mm_set_epi32(0, 0, static_cast<int>(b), static_cast<int>(a));
        return _mm_movemask_epi8(hits(x)) != 0;
    }
#endif
    bool special = false;
    for (std::size_t i = 0; i < n; ++i) {
        const char c = src[i];
        if constexpr (Copy)
            dst[i] = c;
        special |= c == delim || c == '"' || c == '\r' || c == '\n';
    }
    return special;
}

/// Copies `src[0..n)` to `dst` (see scan_impl) and returns true when the
/// field must be quoted.
inline bool copy_and_scan(char* dst, const char* src, std::size_t n, char delim) noexcept
{
    return scan_impl<true>(dst, src, n, delim);
}

/// True when `src[0..n)` holds `delim`, `"`, CR or LF.
inline bool needs_quotes(const char* src, std::size_t n, char delim) noexcept
{
    return scan_impl<false>(nullptr, src, n, delim);
}

/// The first bytes that make a spreadsheet read a cell as a formula
/// (contract §4): `=`, `+`, `-`, `@`, TAB, CR.
inline constexpr bool is_formula_trigger(unsigned char c) noexcept
{
    return c == '=' || c == '+' || c == '-' || c == '@' || c == '\t' || c == '\r';
}

/// Writes `unix_seconds` as `YYYY-MM-DDTHH:MM:SSZ` (exactly 20 bytes) into
/// `out`. Returns false, writing nothing, outside years 0000..9999.
bool format_utc_timestamp(char* out, std::int64_t unix_seconds) noexcept;

} // namespace exportengine::detail
