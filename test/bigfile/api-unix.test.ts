import { bigFileSuite } from './suite.js';

bigFileSuite('unix');
