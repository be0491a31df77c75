//! The store contract, run against every backend. PostgreSQL and MariaDB cases read
//! their servers from KYU_TEST_POSTGRES_URL / KYU_TEST_MYSQL_URL (see store::testdb).

mod sqlite {
    kyu_actors::store_contract_tests!(kyu::store::testdb::sqlite);
    kyu_actors::workflow_contract_tests!(kyu::store::testdb::sqlite);
    kyu_actors::flow_contract_tests!(kyu::store::testdb::sqlite);
}

mod postgres {
    kyu_actors::store_contract_tests!(kyu::store::testdb::postgres);
    kyu_actors::workflow_contract_tests!(kyu::store::testdb::postgres);
    kyu_actors::flow_contract_tests!(kyu::store::testdb::postgres);
}

mod mysql {
    kyu_actors::store_contract_tests!(kyu::store::testdb::mysql);
    kyu_actors::workflow_contract_tests!(kyu::store::testdb::mysql);
    kyu_actors::flow_contract_tests!(kyu::store::testdb::mysql);
}
