CREATE TABLE kit_test.things (id bigint PRIMARY KEY, name text NOT NULL);
