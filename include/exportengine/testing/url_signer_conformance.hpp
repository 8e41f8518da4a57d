// exportengine/testing/url_signer_conformance.hpp — the url signer contract as a
// Catch2 suite any implementation can run (exportengine::testing).
#pragma once
