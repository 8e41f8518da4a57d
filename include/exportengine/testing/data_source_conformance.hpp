// exportengine/testing/data_source_conformance.hpp — the data source contract as a
// Catch2 suite any implementation can run (exportengine::testing).
#pragma once
