// exportengine/testing/job_store_conformance.hpp — the job store contract as a
// Catch2 suite any implementation can run (exportengine::testing).
#pragma once
