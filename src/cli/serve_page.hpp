#pragma once

namespace varps::cli {

// The web page of `varps serve` (GET /).
const char* serve_page_html();

}  // namespace varps::cli
