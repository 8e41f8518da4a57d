// exportengine/testing/storage_sink_conformance.hpp — the storage sink contract as a
// Catch2 suite any implementation can run (exportengine::testing).
#pragma once
