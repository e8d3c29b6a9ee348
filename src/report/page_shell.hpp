#pragma once
// The frame every page of descent shares (src/report/page.cpp): the Content-Security-Policy,
// the style, the chart library inlined, the data as `<script type="application/json"
// id="descent-data">`, a header (#title, #subtitle), <main id="panels">, a footer and the
// page's own script. Used by the run report and the comparison page (compare_page.cpp).
#include <filesystem>
#include <string>
#include <string_view>

namespace descent::report::detail {

// Throws IoError naming the chart library's path when it cannot be read.
std::string page(const std::string& json_text, std::string_view script, std::string_view footer,
                 const std::filesystem::path& chart_library_file);

}  // namespace descent::report::detail
