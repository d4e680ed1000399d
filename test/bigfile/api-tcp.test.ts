import { bigFileSuite } from './suite.js';

bigFileSuite('tcp');
