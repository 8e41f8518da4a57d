#include <exportengine/testing/job_store_conformance.hpp>
